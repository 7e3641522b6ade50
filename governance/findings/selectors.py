"""Reads of findings and sessions, scoped to the workloads the user may see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone

from governance.models import ContainmentAction, Finding, FindingComment
from governance.tokens import ServicePrincipal
from workloads.models import (
    EventType,
    LoggingLevel,
    PendingEvaluation,
    Session,
    UsageEvent,
    Workload,
)
from workloads.selectors import workloads_visible_to

VIEW = "governance.view_findings"
UNRESOLVED = (Finding.Status.OPEN, Finding.Status.ACKNOWLEDGED)


def findings_visible_to(user) -> QuerySet[Finding]:
    """Deny by default. A token (its scope is the view's business) sees the findings of the
    workloads it is bound to; a user needs view_findings, then sees what workloads allow."""
    if isinstance(user, ServicePrincipal):
        if user.token.all_workloads:
            return Finding.objects.all()
        return Finding.objects.filter(workload__in=workloads_visible_to(user))
    if not user.is_authenticated or not user.has_perm(VIEW):
        return Finding.objects.none()
    if user.has_perm("workloads.view_all_workloads"):
        return Finding.objects.all()
    return Finding.objects.filter(workload__in=workloads_visible_to(user))


def finding_list(*, user, filters=None) -> QuerySet[Finding]:
    from governance.findings.filters import FindingFilter, containment_in_force_q

    qs = (
        findings_visible_to(user)
        .select_related("workload__tier", "assignee", "session")
        .defer("session__evaluation_state")  # the evaluator's scratch state, never shown
        .annotate(has_containment_in_force=containment_in_force_q())
    )
    if not filters:
        return qs
    filterset = FindingFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def finding_get(*, user, pk: int) -> Finding:
    finding = (
        findings_visible_to(user)
        .select_related("workload__tier", "workload__session_policy", "session", "assignee")
        .filter(pk=pk)
        .first()
    )
    if finding is None:
        raise Http404("No such finding.")
    return finding


def finding_detail_get(*, user, pk: int) -> Finding:
    """A finding with its comments and containment actions (three queries in all)."""
    finding = (
        findings_visible_to(user)
        .select_related("workload__tier", "workload__session_policy", "assignee")
        .prefetch_related(
            Prefetch("comments", FindingComment.objects.select_related("author")),
            Prefetch(
                "containment",
                ContainmentAction.objects.select_related("workload", "grant__tool", "reversed_by"),
            ),
        )
        .filter(pk=pk)
        .first()
    )
    if finding is None:
        raise Http404("No such finding.")
    return finding


def containment_in_force(finding: Finding) -> list[ContainmentAction]:
    """The finding's containment records not reversed: measures it still holds in force."""
    return list(finding.containment.filter(reversed_at=None).select_related("grant__tool"))


def findings_with_containment_in_force(finding_ids: list[int]) -> list[int]:
    """Of these findings, those holding a containment record not reversed (one query)."""
    return list(
        ContainmentAction.objects.filter(finding_id__in=finding_ids, reversed_at__isnull=True)
        .order_by("finding_id")
        .values_list("finding_id", flat=True)
        .distinct()
    )


def finding_counts(*, user) -> dict:
    """Unresolved findings by status, and open findings by severity, for the live counters.

    Only the unresolved statuses are counted (all the counters show): resolved findings pile
    up forever, and counting them made every queue page read the whole table.
    """
    qs = findings_visible_to(user)
    by_status = dict(
        qs.filter(status__in=UNRESOLVED)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    by_severity = dict(
        qs.filter(status=Finding.Status.OPEN)
        .values_list("severity")
        .annotate(n=Count("id"))
        .values_list("severity", "n")
    )
    return {"by_status": by_status, "open_by_severity": by_severity}


def workload_has_open_high_findings(workload: Workload) -> bool:
    """True while the workload has an unresolved high or critical finding (approvals use this
    to require an extra approval for new grants)."""
    return Finding.objects.filter(
        workload=workload, status__in=UNRESOLVED, severity__in=("high", "critical")
    ).exists()


def sessions_visible_to(user) -> QuerySet[Session]:
    """The same rule as findings_visible_to, for sessions."""
    if isinstance(user, ServicePrincipal):
        if user.token.all_workloads:
            return Session.objects.all()
        return Session.objects.filter(workload__in=workloads_visible_to(user))
    if not user.is_authenticated or not user.has_perm(VIEW):
        return Session.objects.none()
    if user.has_perm("workloads.view_all_workloads"):
        return Session.objects.all()
    return Session.objects.filter(workload__in=workloads_visible_to(user))


def session_list(*, user, filters=None) -> QuerySet[Session]:
    """Visible sessions, newest first, filtered by SessionFilter (invalid values match nothing),
    each with its finding and event counts (subqueries: constant queries per page)."""
    from governance.usage.filters import SessionFilter

    qs = (
        sessions_visible_to(user)
        # The tier and policy say whether each row may show its request.
        .select_related("workload__tier", "workload__session_policy")
        .defer("evaluation_state")
        .order_by("-started_at", "-id")
        .annotate(
            finding_count=_count_of(Finding.objects.filter(session=OuterRef("pk"))),
            event_count=_count_of(UsageEvent.objects.filter(session=OuterRef("pk"))),
        )
    )
    if not filters:
        return qs
    filterset = SessionFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def _count_of(rows: QuerySet) -> Coalesce:
    # COUNT(*), not COUNT(pk): the count then comes from the session index alone.
    counted = rows.order_by().values("session").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def session_get(*, user, pk: int) -> Session:
    session = (
        sessions_visible_to(user)
        .select_related("workload__tier", "workload__session_policy")
        .filter(pk=pk)
        .first()
    )
    if session is None:
        raise Http404("No such session.")
    return session


def session_summary(*, session: Session) -> dict:
    """Counts for one session (one aggregate query over its events, one for its findings)."""
    per_type: dict[str, Mapping[str, Any]] = {
        row["type"]: row
        for row in UsageEvent.objects.filter(session=session)
        .order_by()
        .values("type")
        .annotate(
            n=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
        )
    }
    rows = per_type.values()
    return {
        "events": sum(row["n"] for row in rows),
        "events_by_type": {
            kind: per_type[kind]["n"] for kind in EventType.values if kind in per_type
        },
        "tool_calls": per_type.get(EventType.TOOL_CALL, {}).get("n", 0),
        "input_tokens": sum(row["input_tokens"] or 0 for row in rows),
        "output_tokens": sum(row["output_tokens"] or 0 for row in rows),
        "reasoning_tokens": sum(row["reasoning_tokens"] or 0 for row in rows),
        "finding_ids": list(
            session.findings.order_by("created_at", "id").values_list("id", flat=True)
        ),
    }


# Detector details quoted from what a session said (a drift finding's URLs, paths and
# addresses from the final action): shown only where the session's content is.
CONTENT_DETAILS = ("targets_outside_request",)


def finding_details_shown(finding: Finding) -> dict:
    """The finding's details as a reader may see them: below full trace, what was quoted
    from the session is counted, not shown. Select the finding with its workload's tier and
    session policy, or this queries."""
    details = dict(finding.details or {})
    if workload_logs_content(finding.workload):
        return details
    for key in CONTENT_DETAILS:
        if isinstance(quoted := details.get(key), list):
            details[key] = f"{len(quoted)} not shown (the workload logs metadata only)"
    return details


def session_logs_content(session: Session) -> bool:
    return workload_logs_content(session.workload)


def workload_logs_content(workload: Workload) -> bool:
    """Whether the workload's logging level is full_trace: only then is what a session said
    (its request, reasoning, tool output, final action) shown, in the console or the API.
    The workload's policy override wins, else its tier's default; unclassified → metadata.
    Select the workload with its tier and session policy, or this queries."""
    try:
        level = workload.session_policy.logging_level
    except Workload.session_policy.RelatedObjectDoesNotExist:
        level = ""
    if not level and workload.tier is not None:
        level = workload.tier.logging_level
    return level == LoggingLevel.FULL_TRACE


def session_events(*, session: Session) -> QuerySet[UsageEvent]:
    """The session's events in time order (the (session, occurred_at) index), each with
    `evaluated`: false while it is still on evaluation's pending list."""
    pending = PendingEvaluation.objects.filter(event_id=OuterRef("pk"))
    return (
        UsageEvent.objects.filter(session=session)
        .annotate(evaluated=~Exists(pending))
        .order_by("occurred_at", "id")
    )


# Events a timeline page shows. Rendering is what costs (about 0.15 ms an event), so a
# long run is paged rather than drawn whole: 1,000 events took ~200 ms to render.
TIMELINE_PAGE = 200


TIMELINE_FIELDS = (
    "id",
    "type",
    "occurred_at",
    "tool",
    "duration_ms",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
)


def session_event_page(*, session: Session, event_id: int) -> int:
    """The timeline page that shows one of the session's events (the first page if the event
    is not one of them), so a finding's evidence can link straight to it."""
    event = UsageEvent.objects.filter(session=session, pk=event_id).values("occurred_at").first()
    if event is None:
        return 1
    at = event["occurred_at"]
    earlier = (
        UsageEvent.objects.filter(session=session)
        .filter(Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=event_id))
        .count()
    )
    return earlier // TIMELINE_PAGE + 1


def session_timeline(*, session: Session, page: int = 1, with_content: bool = True) -> dict:
    """One page of the session's events, in order, with the findings that cite each.

    No COUNT: one event more than a page tells whether a next page exists (`truncated`).
    Without `with_content` (a metadata-level workload) the text is never read, only
    `has_content`, so the page can say it was withheld.
    """
    offset = (max(page, 1) - 1) * TIMELINE_PAGE
    rows_qs = UsageEvent.objects.filter(session=session).order_by("occurred_at", "id")
    if with_content:
        rows_qs = rows_qs.only(*TIMELINE_FIELDS, "content")
    else:
        rows_qs = rows_qs.only(*TIMELINE_FIELDS).annotate(
            has_content=ExpressionWrapper(~Q(content=""), output_field=BooleanField())
        )
    events = list(rows_qs[offset : offset + TIMELINE_PAGE + 1])
    findings = list(session.findings.order_by("created_at", "id"))
    markers = defaultdict(list)
    for finding in findings:
        for event_id in finding.evidence:
            markers[event_id].append(finding)
    rows = [{"event": e, "findings": markers.get(e.id, [])} for e in events[:TIMELINE_PAGE]]
    return {
        "rows": rows,
        "truncated": len(events) > TIMELINE_PAGE,
        "page": max(page, 1),
        "first_number": offset + 1,
        "last_number": offset + len(rows),
        "findings": findings,
    }


def _per_day(qs, field: str, days: int) -> list[dict]:
    today = timezone.localdate()
    start = today - timedelta(days=days - 1)
    # A range on the column itself (not `__date__gte`, which wraps it in a cast), so the
    # index serves it and only the last `days` days are read.
    since = timezone.make_aware(datetime.combine(start, time.min))
    counts = dict(
        qs.filter(**{f"{field}__gte": since})
        .annotate(day=TruncDate(field))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    return [
        {"day": start + timedelta(days=i), "n": counts.get(start + timedelta(days=i), 0)}
        for i in range(days)
    ]


def dashboard_series(*, user, days: int = 14) -> dict:
    findings = _per_day(findings_visible_to(user), "created_at", days)
    sessions = _per_day(sessions_visible_to(user), "started_at", days)
    top = list(
        findings_visible_to(user)
        .filter(status__in=UNRESOLVED)
        .values("workload__slug", "workload__name")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(severity__in=("high", "critical"))),
        )
        .order_by("-n", "workload__slug")[:5]
    )
    return {"findings": findings, "sessions": sessions, "top_workloads": top}
