"""Reads for the approval workflow, scoped to what the asking user (or token) may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from governance.approvals.impact import EXCEPTION, Impact, request_impact, session_run_impact
from governance.errors import DomainError
from governance.models import (
    AccessRequest,
    ApprovalDecision,
    ApprovalStep,
    ContainmentAction,
    Decision,
)
from governance.tokens import ServicePrincipal
from workloads.models import (
    CombinationRule,
    RuleException,
    SessionApproval,
    SessionExtension,
    Tool,
    Workload,
)
from workloads.selectors import (
    EXTENDED_LIMITS,
    effective_session_limits,
    window_ceilings,
    workloads_visible_to,
)
from workloads.services import active_tools_of, findings_holding, rule_specs

APPROVE = "governance.approve_request"
GRANT_EXCEPTION = "governance.grant_exception"
REQUEST = "governance.request_entitlement"


def workload_has_open_high_findings(workload: Workload) -> bool:
    """The single place the approval flow asks; True adds one approval step."""
    from governance.findings.selectors import workload_has_open_high_findings as open_high

    return open_high(workload)


def impact_for(
    *, workload: Workload, tools: list[Tool], at=None, kind: str = AccessRequest.Kind.TOOLS
) -> Impact:
    """The impact of granting `tools` to `workload` now; no tools gives the bare steps (a
    session window's). A session run needs one approval whatever the tier."""
    if kind == AccessRequest.Kind.SESSION_RUN:
        return session_run_impact()
    at = at or timezone.now()
    in_force = [
        e.rule.slug
        for e in RuleException.objects.filter(workload=workload, status="active").select_related(
            "rule"
        )
        if e.is_valid_at(at)
    ]
    return request_impact(
        rules=rule_specs((CombinationRule.Scope.STATIC, CombinationRule.Scope.BOTH)),
        current_tools=active_tools_of(workload, at),
        requested_tools={t.slug: t.capability_class for t in tools},
        exceptions_in_force=in_force,
        approvals_required=workload.tier.approvals_required if workload.tier else 1,
        has_open_high_findings=workload_has_open_high_findings(workload),
    )


def requests_visible_to(user) -> QuerySet[AccessRequest]:
    """Approvers and those who see every workload see every request; an owner sees the
    requests they filed or that concern their workloads; a token those of its workloads."""
    qs = AccessRequest.objects.all()
    if isinstance(user, ServicePrincipal):
        return qs.filter(workload__in=workloads_visible_to(user))
    if not user.is_authenticated or not user.has_perm("governance.access_console"):
        return qs.none()
    if user.has_perm(APPROVE) or user.has_perm("workloads.view_all_workloads"):
        return qs
    return qs.filter(Q(requested_by=user) | Q(workload__owner=user))


def _awaiting(qs: QuerySet[AccessRequest], user) -> QuerySet[AccessRequest]:
    """Pending requests this user may still decide: not theirs, not their workload's, with
    an open step they may fill (a remaining rule exception only for an iam_admin)."""
    if not user.has_perm(APPROVE):
        return qs.none()
    decided = ApprovalDecision.objects.filter(request=OuterRef("pk"), approver=user)
    fillable = ApprovalStep.objects.filter(request=OuterRef("pk"), decision__isnull=True)
    if not user.has_perm(GRANT_EXCEPTION):
        fillable = fillable.exclude(kind=EXCEPTION)
    return (
        qs.filter(status=AccessRequest.Status.PENDING)
        .exclude(requested_by=user)
        .exclude(workload__owner=user)
        .exclude(Exists(decided))
        .filter(Exists(fillable))
    )


def request_list(*, user, filters=None) -> QuerySet[AccessRequest]:
    from governance.approvals.filters import AccessRequestFilter

    qs = (
        requests_visible_to(user)
        .select_related("workload__tier", "workload__owner", "requested_by")
        .prefetch_related(
            Prefetch("tools", queryset=Tool.objects.order_by("slug")),
            Prefetch(
                "steps",
                queryset=ApprovalStep.objects.select_related("decision__approver").order_by(
                    "position"
                ),
            ),
            Prefetch(
                "decisions",
                queryset=ApprovalDecision.objects.select_related("approver", "step"),
            ),
        )
    )
    filters = dict(filters or {})
    view = filters.pop("view", "")
    if view == "awaiting" and not isinstance(user, ServicePrincipal):
        qs = _awaiting(qs, user)
    elif view == "mine" and not isinstance(user, ServicePrincipal):
        qs = qs.filter(Q(requested_by=user) | Q(workload__owner=user))
    filterset = AccessRequestFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def request_get(*, user, pk) -> AccessRequest:
    """404 for a request the user may not see."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise Http404("No such request.") from None
    obj = request_list(user=user).filter(pk=pk).first()
    if obj is None:
        raise Http404("No such request.")
    return obj


def request_filer(*, user, on_behalf_of: str | None):
    """Who files a request through the API, and for whom: (by, requested_by).

    A person files for themselves; `on_behalf_of` naming anyone else is refused, not ignored.
    A token files for the active user `on_behalf_of` names, else for the user it acts for
    (None when it acts for nobody: access_request_create says to name one)."""
    if not isinstance(user, ServicePrincipal):
        if on_behalf_of and on_behalf_of != user.get_username():
            raise DomainError(
                "Only a service token files a request on behalf of someone.",
                field="on_behalf_of",
            )
        return user, None
    token = user.token
    if not on_behalf_of:
        return token, token.acts_for
    owner = get_user_model().objects.filter(username=on_behalf_of, is_active=True).first()
    if owner is None:
        raise DomainError(
            f"There is no active user {on_behalf_of!r}.", field="on_behalf_of", code="unknown_user"
        )
    return token, owner


@dataclass(frozen=True)
class DecisionOptions:
    """What one user may do on one request, for showing buttons (the service re-checks)."""

    may_decide: bool
    fills_exception: bool
    may_cancel: bool
    why_not: str = ""


def decision_options(*, access_request: AccessRequest, user) -> DecisionOptions:
    """Uses the request's prefetched steps; one query for the user's own decision at most."""
    pending = access_request.status == AccessRequest.Status.PENDING
    is_party = user.pk in (access_request.requested_by_id, access_request.workload.owner_id)
    may_cancel = pending and is_party
    if not pending:
        return DecisionOptions(False, False, False, f"The request is {access_request.status}.")
    if not user.has_perm(APPROVE):
        return DecisionOptions(False, False, may_cancel, "You are not an approver.")
    if is_party:
        return DecisionOptions(
            False, False, may_cancel, "You requested it or own the workload: someone else decides."
        )
    open_steps = [s for s in access_request.steps.all() if not _has_decision(s)]
    if any(
        _has_decision(s) and s.decision.approver_id == user.pk for s in access_request.steps.all()
    ):
        return DecisionOptions(False, False, may_cancel, "You have already approved it.")
    fills_exception = user.has_perm(GRANT_EXCEPTION) and any(
        s.kind == EXCEPTION for s in open_steps
    )
    if not fills_exception and not any(s.kind != EXCEPTION for s in open_steps):
        return DecisionOptions(
            False, False, may_cancel, "Only an iam_admin can give the remaining exception."
        )
    return DecisionOptions(True, fills_exception, may_cancel)


def queue_row(*, access_request: AccessRequest, user) -> dict:
    """One queue row: the request, what `user` may do, and its step progress."""
    steps = list(access_request.steps.all())
    return {
        "r": access_request,
        "options": decision_options(access_request=access_request, user=user),
        "done": sum(1 for s in steps if _has_decision(s)),
        "total": len(steps),
    }


def open_step_count(*, access_request: AccessRequest) -> int:
    """Approvals a request still waits for (fresh from the database, after a decision)."""
    return access_request.steps.filter(decision__isnull=True).count()


def _has_decision(step: ApprovalStep) -> bool:
    try:
        return step.decision is not None
    except ApprovalDecision.DoesNotExist:
        return False


def workload_access(*, workload: Workload) -> dict:
    """Session windows, exceptions and recent requests of a workload (its grants table is the
    workload page's own)."""
    return {
        "extensions": workload.extensions.select_related("granted_by", "revoked_by").order_by(
            "-created_at", "-id"
        ),
        "exceptions": workload.exceptions.select_related(
            "rule", "approved_by", "revoked_by"
        ).order_by("-created_at", "-id"),
        "requests": workload.access_requests.select_related("requested_by").order_by("-created_at")[
            :10
        ],
        "session_approvals": workload.session_approvals.select_related(
            "approved_by", "revoked_by"
        ).order_by("-created_at", "-id"),
        "blocked_sessions": sessions_refused_approval(workload=workload)
        if workload.sessions_need_approval
        else [],
        "gate_findings": findings_holding(workload, ContainmentAction.Action.GATE_SESSIONS)
        if workload.sessions_need_approval
        else [],
    }


# How far back the workload page looks for sessions refused for want of an approval.
BLOCKED_SESSIONS_ROWS = 2000
BLOCKED_SESSIONS_SHOWN = 10


@dataclass(frozen=True)
class BlockedSession:
    session: str
    last_refused_at: object
    refusals: int
    state: str  # "approved", "awaiting approval" or "" (nobody asked yet)


def sessions_refused_approval(*, workload: Workload, now=None) -> list[BlockedSession]:
    """The sessions the decision endpoint refused because they had no approval, newest first:
    what the owner files session-run requests for. Bounded: the last BLOCKED_SESSIONS_ROWS
    refusals of the last SESSION_APPROVAL_HOURS (the decision_by_workload index), three
    queries whatever the log holds."""
    now = now or timezone.now()
    since = now - timedelta(hours=settings.SESSION_APPROVAL_HOURS)
    refusals = (
        Decision.objects.filter(
            workload=workload.slug,
            decided_at__gte=since,
            reason_code="session_approval_required",
        )
        .exclude(session="")
        .order_by("-decided_at")
        .values_list("session", "decided_at")[:BLOCKED_SESSIONS_ROWS]
    )
    last: dict[str, object] = {}
    counts: dict[str, int] = {}
    for session, decided_at in refusals:
        last.setdefault(session, decided_at)
        counts[session] = counts.get(session, 0) + 1
    shown = list(last)[:BLOCKED_SESSIONS_SHOWN]
    approved = set(
        SessionApproval.objects.filter(
            workload=workload, session__in=shown, status="active", valid_until__gt=now
        ).values_list("session", flat=True)
    )
    pending = set(
        AccessRequest.objects.filter(
            workload=workload,
            kind=AccessRequest.Kind.SESSION_RUN,
            session__in=shown,
            status=AccessRequest.Status.PENDING,
        ).values_list("session", flat=True)
    )
    return [
        BlockedSession(
            session=session,
            last_refused_at=last[session],
            refusals=counts[session],
            state="approved"
            if session in approved
            else "awaiting approval"
            if session in pending
            else "",
        )
        for session in shown
    ]


def session_approval_list(*, user) -> QuerySet[SessionApproval]:
    """Session approvals of the workloads `user` may see, newest first."""
    return (
        SessionApproval.objects.filter(workload__in=workloads_visible_to(user))
        .select_related("workload", "approved_by", "revoked_by")
        .order_by("-created_at", "-id")
    )


# --- rule exceptions and session windows: scoped like grants -------------------------------


def exception_list(*, user, filters=None) -> QuerySet[RuleException]:
    """Rule exceptions of the workloads `user` may see, newest first."""
    from governance.approvals.filters import RuleExceptionFilter

    qs = (
        RuleException.objects.filter(workload__in=workloads_visible_to(user))
        .select_related("workload", "rule", "approved_by", "revoked_by")
        .order_by("-created_at", "-id")
    )
    if not filters:
        return qs
    filterset = RuleExceptionFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def session_window_list(*, user, filters=None) -> QuerySet[SessionExtension]:
    """Session windows (SessionExtension) of the workloads `user` may see, newest first."""
    from governance.approvals.filters import SessionWindowFilter

    qs = (
        SessionExtension.objects.filter(workload__in=workloads_visible_to(user))
        .select_related("workload", "granted_by", "revoked_by")
        .order_by("-created_at", "-id")
    )
    if not filters:
        return qs
    filterset = SessionWindowFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


@dataclass(frozen=True)
class WindowRow:
    label: str
    asked: int | None
    now: int | None
    default: int
    ceiling: int

    @property
    def above_ceiling(self) -> bool:
        return self.asked is not None and self.asked > self.ceiling


def window_comparison(*, workload: Workload, asked: dict | None = None) -> list[WindowRow]:
    """Each limit a session window raises: what is asked, what holds now (with windows and
    narrowings), the tier's default and the most a window may raise it to; so the person
    asking and the one approving see the size of the ask."""
    from governance.findings.narrowing import LIMIT_LABELS

    if workload.tier is None:
        return []
    now = effective_session_limits(workload=workload, at=timezone.now())
    ceilings = window_ceilings(workload.tier)
    return [
        WindowRow(
            label=LIMIT_LABELS[name],
            asked=(asked or {}).get(name),
            now=now.get(name),
            default=getattr(workload.tier, name),
            ceiling=ceilings[name],
        )
        for name in EXTENDED_LIMITS
    ]
