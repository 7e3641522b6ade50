"""The approval workflow's state changes: one transaction each, audited.

Separation of duties is enforced here with the request row locked (SELECT ... FOR UPDATE),
and again by the database constraints on ApprovalDecision. Refusals that matter (a blocked
combination, a self-approval) are audited in their own committed transaction, then raised.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from governance.approvals import tasks
from governance.approvals.impact import APPROVAL, EXCEPTION, Impact
from governance.approvals.selectors import APPROVE, GRANT_EXCEPTION, REQUEST, impact_for
from governance.audit import audit_record, audit_snapshot
from governance.errors import Conflict, DomainError, NotAllowed, RuleViolation
from governance.findings.narrowing import LIMIT_LABELS, caps_in_force, narrowing_findings
from governance.models import (
    AccessRequest,
    ApprovalDecision,
    ApprovalStep,
    ServiceToken,
)
from governance.policy_version import policy_version_bump
from workloads.models import (
    SESSION_ID_MAX,
    CombinationRule,
    Entitlement,
    RuleException,
    SessionApproval,
    SessionExtension,
    Tool,
    Workload,
)
from workloads.selectors import effective_session_limits, window_ceilings
from workloads.services import (
    EXTENSION_AUDIT_FIELDS,
    GRANT_AUDIT_FIELDS,
    SESSION_APPROVAL_AUDIT_FIELDS,
    entitlement_grant,
)

logger = logging.getLogger(__name__)

REQUEST_AUDIT_FIELDS = (
    "workload",
    "kind",
    "justification",
    "duration_days",
    "valid_until",
    "max_session_seconds",
    "max_tool_calls",
    "max_reasoning_tokens",
    "session",
    "status",
    "requested_by",
    "via_token",
    "expires_at",
    "decided_at",
    "decision_reason",
)
WINDOW_FIELDS = ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")
EXCEPTION_AUDIT_FIELDS = (
    "workload",
    "rule",
    "justification",
    "status",
    "valid_from",
    "valid_until",
    "revoke_reason",
)
# Who may revoke what besides the workload's owner (session windows and session approvals).
REVOKE_EXCEPTION = GRANT_EXCEPTION
REVOKE_WINDOW = "workloads.grant_entitlement"


def _enqueue(task, *args) -> None:
    """Follow-up work after commit; a broker outage must not fail a committed change."""
    try:
        task.delay(*args)
    except Exception:
        logger.exception("Could not enqueue %s%r", task.name, args)


def _after_commit(task, *args) -> None:
    transaction.on_commit(partial(_enqueue, task, *args))


def _snapshot(req: AccessRequest) -> dict:
    return audit_snapshot(req, REQUEST_AUDIT_FIELDS) | {
        "tools": sorted(req.tools.values_list("slug", flat=True))
    }


def _audit_refusal(*, by, action: str, obj, detail: dict) -> None:
    """Record a refused attempt so it survives the refusal (its own committed transaction)."""
    with transaction.atomic():
        audit_record(by=by, action=action, obj=obj, after=detail)


def _grant_end(tier, *, duration_days, valid_until, now) -> None:
    """Validate a requested duration against the tier (end date required, longest grant)."""
    if duration_days is not None and valid_until is not None:
        raise DomainError("Give a duration or an end date, not both.", field="valid_until")
    if tier.grant_end_required and duration_days is None and valid_until is None:
        raise DomainError(
            f"The {tier.name} tier requires an end date or a duration.",
            field="valid_until",
            code="end_required",
        )
    if duration_days is not None and not 1 <= duration_days <= tier.max_grant_days:
        raise DomainError(
            f"The {tier.name} tier grants between 1 and {tier.max_grant_days} days.",
            field="duration_days",
            code="too_long",
        )
    if valid_until is not None:
        if valid_until <= now:
            raise DomainError("The end date must be in the future.", field="valid_until")
        if valid_until - now > timedelta(days=tier.max_grant_days):
            raise DomainError(
                f"The {tier.name} tier grants at most {tier.max_grant_days} days.",
                field="valid_until",
                code="too_long",
            )


def access_request_create(
    *,
    by,
    workload: Workload,
    justification: str,
    kind: str = AccessRequest.Kind.TOOLS,
    tools: list[Tool] | tuple[Tool, ...] = (),
    duration_days: int | None = None,
    valid_until: datetime | None = None,
    session_limits: dict | None = None,
    session: str = "",
    requested_by=None,
) -> AccessRequest:
    """File a request. `by` is the owner, or a service token filing for `requested_by`.

    A request that trips a forbid rule is refused (422, the rule named) and the attempt audited.
    """
    via_token = by if isinstance(by, ServiceToken) else None
    requester = requested_by if via_token else by
    now = timezone.now()
    if requester is None or not getattr(requester, "pk", None):
        # Only a token gets here (a person files for themselves): it acts for nobody and
        # named nobody.
        raise DomainError(
            "Name the owner the request is for: this token acts for nobody.",
            field="on_behalf_of",
            code="required",
        )
    if not requester.has_perm(REQUEST):
        raise NotAllowed(f"{requester.get_username()} may not request access.")
    if workload.owner_id != requester.pk:
        raise NotAllowed("Only the workload's owner may request access for it.", code="not_owner")
    if workload.tier is None:
        raise Conflict("Classify the workload before requesting access.", code="unclassified")
    if workload.status in (Workload.Status.RETIRED, Workload.Status.SUSPENDED):
        raise Conflict(f"A {workload.status} workload cannot request access.")
    if not justification.strip():
        raise DomainError(
            "Say why the workload needs this.", field="justification", code="required"
        )
    tools = sorted(set(tools), key=lambda t: t.slug)
    limits = {k: v for k, v in (session_limits or {}).items() if v is not None}
    if session and kind != AccessRequest.Kind.SESSION_RUN:
        raise DomainError("Only a session-run request names a session.", field="session")
    if kind == AccessRequest.Kind.SESSION_RUN:
        _check_session_run(workload, session, tools=tools, limits=limits, now=now)
        if duration_days is not None or valid_until is not None:
            raise DomainError(
                f"A session approval lasts {settings.SESSION_APPROVAL_HOURS} hours; "
                "give no duration or end.",
                field="duration_days",
            )
    elif kind == AccessRequest.Kind.TOOLS:
        if not tools:
            raise DomainError("Pick at least one tool.", field="tools", code="required")
        if limits:
            raise DomainError("A tools request asks for no session limits.", field="kind")
    elif kind == AccessRequest.Kind.SESSION_WINDOW:
        if tools:
            raise DomainError("A session-window request asks for no tools.", field="tools")
        _check_window(workload, limits, now)
        if duration_days is None and valid_until is None:
            duration_days = workload.tier.max_grant_days  # a window always ends
    else:
        raise DomainError(f"Unknown request kind {kind!r}.", field="kind")
    if kind != AccessRequest.Kind.SESSION_RUN:
        _grant_end(workload.tier, duration_days=duration_days, valid_until=valid_until, now=now)
        if duration_days is None and valid_until is None:
            duration_days = workload.tier.max_grant_days  # no end given: the tier's longest

    impact = impact_for(workload=workload, tools=tools, at=now, kind=kind)
    if impact.blocked:
        rule = impact.forbidden[0]
        _audit_refusal(
            by=by,
            action="request.blocked",
            obj=workload,
            detail={"rule": rule.slug, "tools": [t.slug for t in tools]},
        )
        raise RuleViolation(
            f"Blocked by rule {rule.name} ({rule.slug}): this combination is forbidden.",
            detail={"rule": rule.slug},
        )
    ttl_end = now + timedelta(hours=settings.APPROVAL_REQUEST_TTL_HOURS)
    try:
        return _request_store(
            by=by,
            workload=workload,
            kind=kind,
            justification=justification.strip(),
            duration_days=duration_days,
            valid_until=valid_until,
            requester=requester,
            via_token=via_token,
            impact=impact,
            session=session,
            now=now,
            expires_at=min(ttl_end, valid_until) if valid_until else ttl_end,
            limits=limits,
            tools=tools,
        )
    except IntegrityError:
        if kind != AccessRequest.Kind.SESSION_RUN:
            raise
        # Two filings for one session at once: the database let one in.
        raise Conflict(
            f"Session {session} is already awaiting approval.", code="already_pending"
        ) from None


def _request_store(*, by, requester, via_token, impact, now, expires_at, limits, tools, **fields):
    with transaction.atomic():
        # Filings for one workload take turns, so two identical ones sent at once cannot both
        # pass the check below.
        workload = fields["workload"]
        Workload.objects.select_for_update().values_list("pk", flat=True).get(pk=workload.pk)
        same = _identical_pending(workload, fields["kind"], tools, limits, fields["session"], now)
        if same is not None:
            raise Conflict(
                f"Request #{same.pk} already asks for this and is pending: approve, deny or "
                "cancel it rather than filing it again.",
                code="already_pending",
                detail={"request": same.pk},
            )
        req = AccessRequest.objects.create(
            **fields,
            requested_by=requester,
            via_token=via_token,
            impact=impact.as_dict(),
            created_at=now,
            expires_at=expires_at,
            **limits,
        )
        req.tools.set(tools)
        ApprovalStep.objects.bulk_create(
            ApprovalStep(
                request=req,
                position=position,
                kind=spec.kind,
                rules=list(spec.rules),
                reason=spec.reason[:200],
            )
            for position, spec in enumerate(impact.steps, start=1)
        )
        audit_record(by=by, action="request.create", obj=req, after=_snapshot(req))
        _after_commit(tasks.request_filed_notify, req.pk)
    return req


def _identical_pending(workload, kind, tools, limits: dict, session: str, now):
    """A pending request of the workload asking for the same thing, or None: for tools the
    same set of tools, for a session window the same limits, for a session run the same
    session. Its justification and duration may differ: approving both would grant the one
    thing twice (or restart a window), so the owner changes the pending one instead."""
    pending = AccessRequest.objects.filter(
        workload=workload, kind=kind, status=AccessRequest.Status.PENDING, expires_at__gt=now
    ).order_by("created_at", "pk")
    if kind == AccessRequest.Kind.SESSION_RUN:
        return pending.filter(session=session).first()
    if kind == AccessRequest.Kind.SESSION_WINDOW:
        return pending.filter(**{name: limits.get(name) for name in WINDOW_FIELDS}).first()
    wanted = [tool.pk for tool in tools]
    return (
        pending.annotate(
            asked=Count("tools", distinct=True),
            matching=Count("tools", filter=Q(tools__in=wanted), distinct=True),
        )
        .filter(asked=len(wanted), matching=len(wanted))
        .first()
    )


def _check_session_run(workload: Workload, session: str, *, tools, limits: dict, now) -> None:
    """A session-run request: for a gated workload, one session not already approved."""
    if tools or limits:
        raise DomainError("A session-run request asks for no tools or limits.", field="kind")
    if not session.strip():
        raise DomainError("Name the session to run.", field="session", code="required")
    if session != session.strip():
        # Services send ids as they are: " run-1" is another session than "run-1".
        raise DomainError(
            "A session id has no spaces at either end; give it as services send it.",
            field="session",
        )
    if len(session) > SESSION_ID_MAX:
        raise DomainError(f"A session id has at most {SESSION_ID_MAX} characters.", field="session")
    if not workload.sessions_need_approval:
        raise Conflict(
            f"{workload.slug}'s sessions need no approval: they run within its grants.",
            code="sessions_not_gated",
        )
    approved = SessionApproval.objects.filter(
        workload=workload, session=session, status="active", valid_until__gt=now
    )
    if approved.exists():
        raise Conflict(f"Session {session} is already approved.", code="already_approved")
    # One already asked for is refused with the other identical requests, under the
    # workload's lock (_request_store).


def _check_window(workload: Workload, limits: dict, now) -> None:
    unknown = set(limits) - set(WINDOW_FIELDS)
    if unknown:
        raise DomainError(f"Unknown session limit {', '.join(sorted(unknown))}.", field="kind")
    if not limits:
        raise DomainError(
            "Ask for a longer window, more tool calls or more reasoning tokens.",
            field="max_session_seconds",
            code="required",
        )
    caps = caps_in_force([workload.pk]).get(workload.pk, {})
    refusal = _narrowed_refusal(workload, limits, caps)
    if refusal is not None:
        raise refusal
    current = effective_session_limits(workload=workload, at=now, caps=caps)
    for name, value in limits.items():
        if value < 1 or (current.get(name) is not None and value <= current[name]):
            raise DomainError(
                f"Ask for more than the current {current.get(name)}.", field=name, code="not_more"
            )
    above = _above_ceiling(workload, limits)
    if above is not None:
        raise above


def _above_ceiling(workload: Workload, limits, *, error=DomainError) -> DomainError | None:
    """A window raises a limit to at most its tier's ceiling (window_ceilings). `error`:
    Conflict at approval, where the request was valid when filed and the tier moved since."""
    if workload.tier is None:
        return None
    ceilings = window_ceilings(workload.tier)
    for name, value in limits.items():
        if value is not None and value > ceilings[name]:
            return error(
                f"The {workload.tier.name} tier allows a session window of at most "
                f"{ceilings[name]} ({settings.SESSION_WINDOW_MAX_FACTOR} times its default of "
                f"{getattr(workload.tier, name)}).",
                field=name,
                code="above_ceiling",
            )
    return None


def _narrowed_refusal(workload: Workload, limits, caps: dict) -> Conflict | None:
    """A longer window on a limit a finding's containment caps would not apply while the cap
    stands, and would apply unannounced the moment it is reversed: reversing comes first."""
    narrowed = [name for name in WINDOW_FIELDS if name in limits and name in caps]
    if not narrowed:
        return None
    holders = narrowing_findings(workload.pk, narrowed)
    names = ", ".join(LIMIT_LABELS[name].lower() for name in narrowed)
    return Conflict(
        f"The containment of finding {', '.join(f'#{pk}' for pk in holders)} caps {names}: "
        "an IAM admin reverses it on the finding's page before a longer window can apply.",
        field=narrowed[0],
        code="narrowed",
    )


def _locked(access_request: AccessRequest) -> AccessRequest:
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("workload__tier", "requested_by")
        .get(pk=access_request.pk)
    )


def _refusal_to_decide(req: AccessRequest, by) -> DomainError | None:
    """Why `by` may not decide `req` now, or None. Called with the request row locked."""
    if req.status != AccessRequest.Status.PENDING:
        return Conflict(f"The request is already {req.status}.", code="not_pending")
    if isinstance(by, ServiceToken) or not getattr(by, "pk", None) or not by.has_perm(APPROVE):
        return NotAllowed("Only approvers decide requests.")
    if by.pk == req.requested_by_id:
        return NotAllowed(
            "You filed this request: someone else must decide it.", code="self_approval"
        )
    if by.pk == req.workload.owner_id:
        return NotAllowed("You own this workload: someone else must decide.", code="owner_approval")
    if req.decisions.filter(approver=by).exists():
        return Conflict("You have already decided on this request.", code="already_decided")
    return None


def _audit_sod_refusal(req, by, error: DomainError) -> None:
    if error.code in ("self_approval", "owner_approval", "already_decided"):
        audit_record(
            by=by,
            action="request.decision_refused",
            obj=req,
            after={"code": error.code, "message": error.message},
        )


def access_request_approve(
    *, access_request: AccessRequest, by, comment: str = "", justification: str = ""
) -> AccessRequest:
    """Fill the next open step `by` may fill; the last step grants. An iam_admin fills the
    exception step when one is open, and must write a justification for it."""
    error: DomainError | None = None
    with transaction.atomic():
        # The workload row before the request's and before the audit chain, whatever the
        # request: containment (applying, reversing, lifting, cancelling session-run requests)
        # takes the workload and then the audit chain, and the other order deadlocks with it.
        list(
            Workload.objects.select_for_update()
            .filter(pk=access_request.workload_id)
            .values_list("pk", flat=True)
        )
        # Then the grants the last approval may supersede, still before the audit chain: a
        # console revoke and evaluation take a grant, then the chain.
        list(
            Entitlement.objects.select_for_update()
            .filter(
                workload_id=access_request.workload_id,
                status=Entitlement.Status.ACTIVE,
                tool__in=access_request.tools.all(),
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # And an earlier approval of the same session, which a session run closes (expiring
        # one takes its row, then the chain).
        if access_request.kind == AccessRequest.Kind.SESSION_RUN:
            list(
                SessionApproval.objects.select_for_update()
                .filter(
                    workload_id=access_request.workload_id,
                    session=access_request.session,
                    status="active",
                )
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        req = _locked(access_request)
        error = _refusal_to_decide(req, by)
        if error is None:
            error = _approve_locked(req, by, comment=comment, justification=justification)
        else:
            _audit_sod_refusal(req, by, error)
    if error is not None:
        raise error
    return req


def _approve_locked(req: AccessRequest, by, *, comment: str, justification: str):
    """Returns a refusal (already audited, to raise after commit) or None after approving.

    What the request needs is re-checked here, under the lock: the filing-time picture may be
    stale (past its deadline, the workload suspended, rules or the tier changed since)."""
    refusal = _stale_refusal(req)
    if refusal is not None:
        audit_record(
            by=by,
            action="request.approval_blocked",
            obj=req,
            after={"code": refusal.code, "message": refusal.message},
        )
        return refusal
    tools = list(req.tools.all())
    impact = impact_for(workload=req.workload, tools=tools, kind=req.kind)
    excepted = {rule for s in req.steps.all() if s.kind == EXCEPTION for rule in s.rules}
    uncovered = [hit for hit in impact.exceptions_needed if hit.slug not in excepted]
    blocking = impact.forbidden or uncovered
    if blocking:
        rule = blocking[0]
        audit_record(by=by, action="request.approval_blocked", obj=req, after={"rule": rule.slug})
        if impact.forbidden:
            message = f"Blocked by rule {rule.name} ({rule.slug}): this combination is forbidden."
            return RuleViolation(message, detail={"rule": rule.slug})
        return RuleViolation(
            f"Rule {rule.name} ({rule.slug}) now needs an exception this request did not ask "
            "for: deny it and file a new one.",
            code="exception_required",
            detail={"rule": rule.slug},
        )
    _add_missing_steps(req, impact, by)

    open_steps = list(req.steps.filter(decision__isnull=True).order_by("position"))
    exception_steps = [s for s in open_steps if s.kind == EXCEPTION]
    if exception_steps and by.has_perm(GRANT_EXCEPTION):
        if not justification.strip():
            raise DomainError(
                "Write the justification for the exception.",
                field="justification",
                code="required",
            )
        step = exception_steps[0]
    else:
        approval_steps = [s for s in open_steps if s.kind != EXCEPTION]
        if not approval_steps:
            raise NotAllowed(
                "Only an iam_admin can give the remaining rule exception.",
                code="exception_needs_iam_admin",
            )
        step = approval_steps[0]
        justification = ""

    try:
        with transaction.atomic():
            ApprovalDecision.objects.create(
                request=req,
                step=step,
                approver=by,
                requester_id=req.requested_by_id,
                workload_owner_id=req.workload.owner_id,
                verdict=ApprovalDecision.Verdict.APPROVE,
                comment=comment.strip(),
                justification=justification.strip(),
            )
    except IntegrityError:
        # The lock makes this unreachable in practice; the constraints are the backstop.
        return Conflict("This decision breaks separation of duties.", code="already_decided")
    audit_record(
        by=by,
        action="request.exception_approve" if step.kind == EXCEPTION else "request.step_approve",
        obj=req,
        after={
            "step": step.position,
            "kind": step.kind,
            "rules": step.rules,
            "comment": comment.strip(),
            "justification": justification.strip(),
        },
    )
    if len(open_steps) == 1:
        _grant(req, by, excepted | {hit.slug for hit in impact.exceptions_in_force}, tools)
    return None


def _stale_refusal(req: AccessRequest) -> DomainError | None:
    """Why a pending request can no longer be approved, or None. The expiry job runs every few
    minutes; an approval in between must not outlive the deadline."""
    if req.expires_at <= timezone.now():
        return Conflict(
            f"The request passed its deadline ({req.expires_at:%Y-%m-%d %H:%M} UTC) undecided: "
            "the owner must file a new one.",
            code="request_expired",
        )
    status = req.workload.status
    if status not in (Workload.Status.ACTIVE, Workload.Status.DRAFT):
        return Conflict(
            f"The workload is {status}: nothing can be approved for it while it is {status}.",
            code="workload_not_active",
        )
    if req.kind == AccessRequest.Kind.SESSION_RUN and not _still_gated(req.workload):
        return Conflict(
            "The workload's sessions no longer need approval: deny this request as moot.",
            code="sessions_not_gated",
        )
    if req.kind == AccessRequest.Kind.SESSION_WINDOW:
        # Narrowed since it was filed: decided now, it would wait unseen behind the cap.
        asked = {name: getattr(req, name) for name in WINDOW_FIELDS}
        asked = {name: value for name, value in asked.items() if value is not None}
        caps = caps_in_force([req.workload_id]).get(req.workload_id, {})
        # Or moved to a tier whose ceiling it now passes.
        return _narrowed_refusal(req.workload, asked, caps) or _above_ceiling(
            req.workload, asked, error=Conflict
        )
    return None


def _still_gated(workload: Workload) -> bool:
    """Read under the workload's row lock, which lifting the gate also takes: an approval
    racing a reversal either lands before it (and is ended by it) or sees it."""
    return bool(
        Workload.objects.select_for_update()
        .filter(pk=workload.pk)
        .values_list("sessions_need_approval", flat=True)
        .first()
    )


def _add_missing_steps(req: AccessRequest, impact: Impact, by) -> None:
    """A workload reclassified to a stricter tier (or with new open high findings) since filing
    needs more approvals: add the steps the request lacks, so it is never granted on the
    filing-time count. Steps are never removed: a laxer tier keeps what was asked."""
    steps = list(req.steps.all())
    have = Counter(s.reason for s in steps if s.kind != EXCEPTION)
    need = Counter(s.reason[:200] for s in impact.steps if s.kind != EXCEPTION)
    missing = list((need - have).elements())
    if not missing:
        return
    last = max((s.position for s in steps), default=0)
    ApprovalStep.objects.bulk_create(
        ApprovalStep(request=req, position=last + i, kind=APPROVAL, reason=reason)
        for i, reason in enumerate(missing, start=1)
    )
    audit_record(
        by=by,
        action="request.steps_added",
        obj=req,
        after={
            "tier": req.workload.tier.slug if req.workload.tier else None,
            "approvals_required": impact.approvals_required,
            "added": missing,
        },
    )


def pending_requests_lock(workload: Workload) -> list[AccessRequest]:
    """The workload's pending requests whose steps follow its tier, locked in id order. Taken
    after the workload's row and before the audit chain, as an approval takes them."""
    return list(
        AccessRequest.objects.select_for_update(of=("self",))
        .filter(workload=workload, status=AccessRequest.Status.PENDING)
        .exclude(kind=AccessRequest.Kind.SESSION_RUN)  # one approval whatever the tier
        .select_related("workload__tier")
        .prefetch_related("tools", "steps")
        .order_by("id")
    )


def pending_requests_top_up(requests: list[AccessRequest], by) -> None:
    """A reclassification to a stricter tier adds, at once, the steps its pending requests
    now lack, so the queue and the request pages show what is still needed rather than the
    filing-time count (an approval would add them anyway, before it grants)."""
    for req in requests:
        impact = impact_for(workload=req.workload, tools=list(req.tools.all()), kind=req.kind)
        _add_missing_steps(req, impact, by)


def _grant(req: AccessRequest, by, allowed_rules: set[str], tools: list[Tool]) -> None:
    """The final approval: exceptions, then grants (or the session window), then the status."""
    now = timezone.now()
    tier = req.workload.tier
    if tier is None:  # a request needs a classified workload; its tier sets the longest grant
        raise Conflict("Classify the workload before granting it anything.", code="unclassified")
    if req.valid_until is not None:
        end = req.valid_until
    else:  # filed before an empty end defaulted at filing, it may have neither: the longest
        end = now + timedelta(days=req.duration_days or tier.max_grant_days)
    # A workload reclassified since filing may now allow less: grant the new tier's longest
    # rather than leave approvers a request they can only deny (less access, never more).
    end = min(end, now + timedelta(days=tier.max_grant_days))
    if req.kind == AccessRequest.Kind.TOOLS:
        exception_decision = (
            req.decisions.filter(step__kind=EXCEPTION).select_related("step").first()
        )
        if exception_decision is not None and exception_decision.step is not None:
            for rule in CombinationRule.objects.filter(slug__in=exception_decision.step.rules):
                exception = RuleException.objects.create(
                    workload=req.workload,
                    rule=rule,
                    justification=exception_decision.justification,
                    valid_from=now,
                    valid_until=end,
                    approved_by=exception_decision.approver,
                    request=req,
                )
                audit_record(
                    by=exception_decision.approver,
                    action="exception.create",
                    obj=exception,
                    after=audit_snapshot(exception, EXCEPTION_AUDIT_FIELDS) | {"request": req.pk},
                )
        for tool in tools:
            _supersede(req, tool, by, now)
            entitlement_grant(
                workload=req.workload,
                tool=tool,
                by=by,
                valid_from=now,
                valid_until=end,
                allow_exception_rules=tuple(sorted(allowed_rules)),
                request=req,
            )
    elif req.kind == AccessRequest.Kind.SESSION_RUN:
        _session_approval_create(req, by, now)
    else:
        extension = SessionExtension.objects.create(
            workload=req.workload,
            valid_from=now,
            valid_until=end,
            granted_by=by,
            request=req,
            **{name: getattr(req, name) for name in WINDOW_FIELDS},
        )
        audit_record(
            by=by,
            action="extension.create",
            obj=extension,
            after=audit_snapshot(extension, EXTENSION_AUDIT_FIELDS) | {"request": req.pk},
        )
    before = _snapshot(req)
    req.status = AccessRequest.Status.APPROVED
    req.decided_at = now
    req.save(update_fields=["status", "decided_at"])
    audit_record(by=by, action="request.approve", obj=req, before=before, after=_snapshot(req))
    policy_version_bump()
    _after_commit(tasks.request_decided_notify, req.pk)


def _session_approval_create(req: AccessRequest, by, now) -> None:
    """Leave for the request's session, for SESSION_APPROVAL_HOURS. An earlier approval of the
    same session (past its end, not yet marked) is closed first."""
    stale = SessionApproval.objects.select_for_update().filter(
        workload=req.workload, session=req.session, status="active"
    )
    for old in stale:
        before = audit_snapshot(old, SESSION_APPROVAL_AUDIT_FIELDS)
        old.status = "expired"
        old.save(update_fields=["status"])
        after = audit_snapshot(old, SESSION_APPROVAL_AUDIT_FIELDS)
        audit_record(by=by, action="session_approval.expire", obj=old, before=before, after=after)
    approval = SessionApproval.objects.create(
        workload=req.workload,
        session=req.session,
        valid_from=now,
        valid_until=now + timedelta(hours=settings.SESSION_APPROVAL_HOURS),
        approved_by=by,
        request=req,
    )
    audit_record(
        by=by,
        action="session_approval.create",
        obj=approval,
        after=audit_snapshot(approval, SESSION_APPROVAL_AUDIT_FIELDS) | {"request": req.pk},
    )


def _supersede(req: AccessRequest, tool: Tool, by, now) -> None:
    """A new grant of a tool the workload already holds replaces the old one."""
    old = (
        Entitlement.objects.select_for_update()
        .filter(workload=req.workload, tool=tool, status=Entitlement.Status.ACTIVE)
        .first()
    )
    if old is None:
        return
    before = audit_snapshot(old, GRANT_AUDIT_FIELDS)
    old.status = Entitlement.Status.REVOKED
    old.revoked_at = now
    old.revoked_by = by
    old.revoke_reason = f"Superseded by request #{req.pk}."
    old.save(update_fields=["status", "revoked_at", "revoked_by", "revoke_reason"])
    audit_record(
        by=by,
        action="grant.supersede",
        obj=old,
        before=before,
        after=audit_snapshot(old, GRANT_AUDIT_FIELDS),
    )


def access_request_deny(*, access_request: AccessRequest, by, comment: str) -> AccessRequest:
    """Deny with a reason (kept on the request); final."""
    if not comment.strip():
        raise DomainError("Say why the request is denied.", field="comment", code="required")
    error: DomainError | None = None
    with transaction.atomic():
        req = _locked(access_request)
        error = _refusal_to_decide(req, by)
        if error is None:
            before = _snapshot(req)
            ApprovalDecision.objects.create(
                request=req,
                approver=by,
                requester_id=req.requested_by_id,
                workload_owner_id=req.workload.owner_id,
                verdict=ApprovalDecision.Verdict.DENY,
                comment=comment.strip(),
            )
            req.status = AccessRequest.Status.DENIED
            req.decided_at = timezone.now()
            req.decision_reason = comment.strip()
            req.save(update_fields=["status", "decided_at", "decision_reason"])
            audit_record(by=by, action="request.deny", obj=req, before=before, after=_snapshot(req))
            _after_commit(tasks.request_decided_notify, req.pk)
        else:
            _audit_sod_refusal(req, by, error)
    if error is not None:
        raise error
    return req


@transaction.atomic
def access_request_cancel(*, access_request: AccessRequest, by, reason: str = "") -> AccessRequest:
    """The requester or the workload's owner withdraws a pending request."""
    req = _locked(access_request)
    filed_by_token = isinstance(by, ServiceToken) and req.via_token_id == by.pk
    user = by.acts_for if isinstance(by, ServiceToken) else by
    if not filed_by_token and getattr(user, "pk", None) not in (
        req.requested_by_id,
        req.workload.owner_id,
    ):
        raise NotAllowed("Only the requester, the workload's owner or the filing token may cancel.")
    if req.status != AccessRequest.Status.PENDING:
        raise Conflict(f"The request is already {req.status}.", code="not_pending")
    before = _snapshot(req)
    req.status = AccessRequest.Status.CANCELLED
    req.decided_at = timezone.now()
    req.decision_reason = reason.strip() or "Cancelled by the requester."
    req.save(update_fields=["status", "decided_at", "decision_reason"])
    audit_record(by=by, action="request.cancel", obj=req, before=before, after=_snapshot(req))
    return req


def session_run_requests_cancel(*, workload: Workload, by, reason: str) -> int:
    """Close the session-run requests pending for a workload whose sessions gate was lifted:
    filed under one gate, they must not be approved under the next. Called by the reversal
    that lifted it, with the workload row locked (the order every approval of a session run
    takes too). None can be filed while no gate stands."""
    cancelled = 0
    pending = AccessRequest.objects.select_for_update().filter(
        workload=workload,
        kind=AccessRequest.Kind.SESSION_RUN,
        status=AccessRequest.Status.PENDING,
    )
    for req in pending:
        before = _snapshot(req)
        req.status = AccessRequest.Status.CANCELLED
        req.decided_at = timezone.now()
        req.decision_reason = reason
        req.save(update_fields=["status", "decided_at", "decision_reason"])
        audit_record(by=by, action="request.cancel", obj=req, before=before, after=_snapshot(req))
        _after_commit(tasks.request_decided_notify, req.pk)
        cancelled += 1
    return cancelled


def access_requests_expire(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire pending requests past their deadline. Idempotent: each row is claimed locked."""
    now = now or timezone.now()
    ids = list(
        AccessRequest.objects.filter(
            status=AccessRequest.Status.PENDING, expires_at__lte=now
        ).values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for pk in ids:
        with transaction.atomic():
            req = (
                AccessRequest.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, status=AccessRequest.Status.PENDING)
                .first()
            )
            if req is None:
                continue
            before = _snapshot(req)
            req.status = AccessRequest.Status.EXPIRED
            req.decided_at = now
            req.decision_reason = "No decision before the request's deadline."
            req.save(update_fields=["status", "decided_at", "decision_reason"])
            audit_record(
                by=None, action="request.expire", obj=req, before=before, after=_snapshot(req)
            )
            _after_commit(tasks.request_decided_notify, req.pk)
            expired += 1
    return expired


def _notify_once(candidates, *, stamp: str, task, now, limit: int) -> int:
    """Claim each candidate by setting `stamp` where it is still empty (a conditional UPDATE:
    a second run or a parallel worker finds nothing), then notify after commit."""
    sent = 0
    for pk in list(candidates.values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            if candidates.filter(pk=pk).update(**{stamp: now}):
                _after_commit(task, pk)
                sent += 1
    return sent


def access_requests_remind(*, now: datetime | None = None, limit: int = 500) -> int:
    """Remind approvers once about pending requests that expire within the reminder window."""
    now = now or timezone.now()
    candidates = AccessRequest.objects.filter(
        status=AccessRequest.Status.PENDING,
        reminded_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(hours=settings.APPROVAL_REMINDER_HOURS),
    )
    return _notify_once(
        candidates, stamp="reminded_at", task=tasks.request_reminder_notify, now=now, limit=limit
    )


_EXPIRING = (
    (Entitlement, "grant.expire", GRANT_AUDIT_FIELDS),
    (RuleException, "exception.expire", EXCEPTION_AUDIT_FIELDS),
    (SessionExtension, "extension.expire", EXTENSION_AUDIT_FIELDS),
    (SessionApproval, "session_approval.expire", SESSION_APPROVAL_AUDIT_FIELDS),
)


def grants_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Mark grants, rule exceptions, session windows and session approvals past their end as
    expired.

    Readers already treat them as expired (`is_valid_at`); this makes the status say so,
    audits it and bumps the policy version. Idempotent: each row is claimed locked.
    """
    now = now or timezone.now()
    count = 0
    for model, action, fields in _EXPIRING:
        ids = list(
            model.objects.filter(status="active", valid_until__lte=now).values_list(
                "pk", flat=True
            )[:limit]
        )
        for pk in ids:
            with transaction.atomic():
                obj = (
                    model.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, status="active", valid_until__lte=now)
                    .first()
                )
                if obj is None:
                    continue
                before = audit_snapshot(obj, fields)
                obj.status = "expired"
                obj.save(update_fields=["status"])
                audit_record(
                    by=None,
                    action=action,
                    obj=obj,
                    before=before,
                    after=audit_snapshot(obj, fields),
                )
                policy_version_bump()
                count += 1
    return count


# What ends, and the task that warns its workload's owner.
_WARNED = (
    (Entitlement, tasks.grant_expiring_notify),
    (RuleException, tasks.exception_expiring_notify),
    (SessionExtension, tasks.extension_expiring_notify),
)


def grants_warn_expiring(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Tell owners, once each, that a grant, a rule exception or a session window ends within
    GRANT_EXPIRY_WARNING_DAYS."""
    now = now or timezone.now()
    sent = 0
    for model, task in _WARNED:
        candidates = model.objects.filter(
            status="active",
            expiry_notified_at__isnull=True,
            valid_until__gt=now,
            valid_until__lte=now + timedelta(days=settings.GRANT_EXPIRY_WARNING_DAYS),
        )
        sent += _notify_once(
            candidates, stamp="expiry_notified_at", task=task, now=now, limit=limit
        )
    return sent


# --- revoking rule exceptions and session windows -------------------------------------------


def may_revoke_window(by, window: SessionExtension | SessionApproval) -> bool:
    """A session window or a session's approval: an IAM admin, or the workload's owner (it
    only ever gives access back)."""
    return by.has_perm(REVOKE_WINDOW) or window.workload.owner_id == by.pk


def _may_revoke_exception(by, exception: RuleException) -> bool:
    return by.has_perm(REVOKE_EXCEPTION)


# model -> (what to call it, audit action, audited fields, who may revoke it)
_REVOCABLE: dict[type, tuple[str, str, tuple[str, ...], Callable[[Any, Any], bool]]] = {
    RuleException: ("exception", "exception.revoke", EXCEPTION_AUDIT_FIELDS, _may_revoke_exception),
    SessionExtension: (
        "session window",
        "extension.revoke",
        EXTENSION_AUDIT_FIELDS,
        may_revoke_window,
    ),
    SessionApproval: (
        "session approval",
        "session_approval.revoke",
        SESSION_APPROVAL_AUDIT_FIELDS,
        may_revoke_window,
    ),
}


def _revoke(model, pk: int, *, by, reason: str):
    """Lock the row, check who asks and that it is still in force, revoke, audit, bump."""
    what, action, fields, may = _REVOCABLE[model]
    with transaction.atomic():
        obj = model.objects.select_for_update(of=("self",)).select_related("workload").get(pk=pk)
        if isinstance(by, ServiceToken) or not getattr(by, "pk", None) or not may(by, obj):
            raise NotAllowed(f"You may not revoke this {what}.")
        if not reason.strip():
            raise DomainError(f"Say why the {what} is revoked.", field="reason", code="required")
        now = timezone.now()
        if obj.status != "active" or obj.valid_until <= now:
            raise Conflict(f"The {what} is already {obj.effective_status}.", code="not_active")
        before = audit_snapshot(obj, fields)
        obj.status = "revoked"
        obj.revoked_at = now
        obj.revoked_by = by
        obj.revoke_reason = reason.strip()
        obj.save(update_fields=["status", "revoked_at", "revoked_by", "revoke_reason"])
        after = audit_snapshot(obj, fields)
        audit_record(by=by, action=action, obj=obj, before=before, after=after)
        policy_version_bump()
    return obj


def rule_exception_revoke(*, exception: RuleException, by, reason: str) -> RuleException:
    """An iam_admin withdraws an exception: its rule applies again at once (409 unless it is
    still in force)."""
    return _revoke(RuleException, exception.pk, by=by, reason=reason)


def session_extension_revoke(*, extension: SessionExtension, by, reason: str) -> SessionExtension:
    """An iam_admin or the workload's owner ends a session window early; the policy's own
    limits apply again at once (409 unless it is still in force)."""
    return _revoke(SessionExtension, extension.pk, by=by, reason=reason)


def session_approval_revoke(*, approval: SessionApproval, by, reason: str) -> SessionApproval:
    """An IAM admin or the workload's owner ends a session's approval early: its next call is
    denied (409 unless it is still in force)."""
    return _revoke(SessionApproval, approval.pk, by=by, reason=reason)
