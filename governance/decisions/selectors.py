"""Reads of the decision log, scoped to who may read it."""

from collections import Counter
from datetime import timedelta
from typing import Protocol, cast

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from governance.decisions.log import LOSSES_ACTION
from governance.forms import DATETIME_BOUNDS
from governance.models import AuditEvent, Decision, DecisionCount


class DecisionFilter(django_filters.FilterSet):
    """The console's filters; each is backed by an index on Decision."""

    workload = django_filters.CharFilter()
    tool = django_filters.CharFilter()
    decision = django_filters.ChoiceFilter(choices=Decision.Answer.choices)
    session = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(
        field_name="decided_at", lookup_expr="gte", validators=DATETIME_BOUNDS
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="decided_at", lookup_expr="lt", validators=DATETIME_BOUNDS
    )

    class Meta:
        model = Decision
        fields = ["workload", "tool", "decision", "session"]


def _may_read_decisions(user) -> bool:
    return user.is_authenticated and user.has_perm("governance.view_decisions")


def decisions_visible_to(user) -> QuerySet[Decision]:
    if _may_read_decisions(user):
        return Decision.objects.all()
    return Decision.objects.none()


def decision_log_losses(*, user, days: int = 7) -> dict | None:
    """Entries the log writers reported lost in the last `days` (None: none, or not
    visible). One query on the audit log's action index."""
    if not _may_read_decisions(user):
        return None
    since = timezone.now() - timedelta(days=days)
    reports = list(
        AuditEvent.objects.filter(action=LOSSES_ACTION, created_at__gte=since)
        .order_by("-id")
        .values_list("after", flat=True)[:500]
    )
    if not reports:
        return None
    return {
        "lost": sum(int((after or {}).get("lost", 0)) for after in reports),
        "reports": len(reports),
        "days": days,
        "action": LOSSES_ACTION,
    }


def decision_list(*, user, filters=None) -> QuerySet[Decision]:
    """Visible decisions, newest first, filtered (invalid filter values match nothing)."""
    qs = decisions_visible_to(user).select_related("token").order_by("-decided_at", "-id")
    if not filters:
        return qs
    filterset = DecisionFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def decisions_for_session(*, user, workload: str, session_external_id: str) -> QuerySet[Decision]:
    """A session's decisions in order, for the session timeline (link: ?workload=&session=)."""
    return (
        decisions_visible_to(user)
        .filter(workload=workload, session=session_external_id)
        .order_by("decided_at", "id")
    )


SESSION_DECISIONS_SHOWN = 20


class _TimelineLinked(Protocol):
    """A Decision once decisions_link_timelines has set the attribute the log page reads."""

    timeline_pk: int | None


def decisions_link_timelines(*, user, decisions: list[Decision]) -> list[Decision]:
    """Set `timeline_pk` on each decision: its session's pk when Mandate has usage for that
    session and `user` may see it, else None. One query, whatever the page holds."""
    from governance.findings.selectors import sessions_visible_to

    pairs = {(d.workload, d.session) for d in decisions if d.session}
    found = {}
    if pairs:
        rows = (
            sessions_visible_to(user)
            .filter(
                workload__slug__in={w for w, _s in pairs},
                external_id__in={s for _w, s in pairs},
            )
            .values_list("workload__slug", "external_id", "pk")
        )
        found = {(w, s): pk for w, s, pk in rows}
    for decision in decisions:
        cast(_TimelineLinked, decision).timeline_pk = found.get(
            (decision.workload, decision.session)
        )
    return decisions


def session_decisions(*, user, session) -> dict:
    """The gateway's answers for one session, for its timeline: the first ones in order and
    whether there are more (the decision log, filtered to the session, has them all). Empty
    for a user who may not read the decision log."""
    rows = list(
        decisions_for_session(
            user=user, workload=session.workload.slug, session_external_id=session.external_id
        ).only("id", "decided_at", "tool", "decision", "reason_code")[: SESSION_DECISIONS_SHOWN + 1]
    )
    return {
        "decisions": rows[:SESSION_DECISIONS_SHOWN],
        "more": len(rows) > SESSION_DECISIONS_SHOWN,
    }


def decision_chart_series(*, user, hours: int = 24) -> dict:
    """Denials per hour and the reasons for them over the last `hours`, from the hourly
    counts the log writer keeps (one small query, whatever the size of the log)."""
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    denied = dict.fromkeys((start + timedelta(hours=i) for i in range(hours)), 0)
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    if _may_read_decisions(user):
        counts = DecisionCount.objects.filter(hour__gte=start).values_list(
            "hour", "decision", "reason_code", "n"
        )
        for hour, decision, code, n in counts:
            totals[decision] += n
            if decision == Decision.Answer.DENY:
                denied[hour] = denied.get(hour, 0) + n
                reasons[code] += n
    return {
        "denied_per_hour": [
            {"day": hour, "n": n, "label": timezone.localtime(hour).strftime("%H:%M")}
            for hour, n in denied.items()
        ],
        "since": start,  # the chart's first hour, for a link to the same span of the log
        "allowed": totals[Decision.Answer.ALLOW],
        "denied": totals[Decision.Answer.DENY],
        "reasons": reasons.most_common(6),
    }
