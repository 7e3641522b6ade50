"""Review of findings and the containment they trigger: one transaction each, audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format

from governance.approvals.services import session_run_requests_cancel
from governance.audit import audit_record, audit_snapshot
from governance.errors import Conflict, DomainError, NotAllowed
from governance.findings import narrowing
from governance.models import (
    AccessRequest,
    AuditEvent,
    ContainmentAction,
    Finding,
    FindingComment,
)
from governance.policy_version import policy_version_bump
from workloads import services as workload_services
from workloads.models import Entitlement, RuleException, SessionApproval, Workload
from workloads.selectors import effective_session_limits

TRIAGE = "governance.triage_finding"
CONTAIN = "governance.contain_finding"
REVERSE = "governance.reverse_containment"
# A finding containment may follow by hand: one still being triaged.
CONTAINABLE = (Finding.Status.OPEN, Finding.Status.ACKNOWLEDGED)
# Measures on the whole workload: each finding that takes one records it, and the measure is
# lifted only when the last of those records is reversed.
HELD_BY_EVERY_FINDING = (
    ContainmentAction.Action.SUSPEND_WORKLOAD,
    ContainmentAction.Action.GATE_SESSIONS,
)
# A suspended workload may be gated too: the gate then holds once it is reinstated.
GATEABLE = (Workload.Status.ACTIVE, Workload.Status.SUSPENDED)
FINDING_AUDIT_FIELDS = ("kind", "severity", "status", "workload", "session", "assignee")

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    Finding.Status.OPEN: {
        Finding.Status.ACKNOWLEDGED,
        Finding.Status.RESOLVED,
        Finding.Status.FALSE_POSITIVE,
    },
    Finding.Status.ACKNOWLEDGED: {
        Finding.Status.RESOLVED,
        Finding.Status.FALSE_POSITIVE,
        Finding.Status.OPEN,
    },
    Finding.Status.RESOLVED: {Finding.Status.OPEN},
    Finding.Status.FALSE_POSITIVE: {Finding.Status.OPEN},
}


def _require(by, permission: str) -> None:
    if not by.has_perm(permission):
        raise NotAllowed()


def may_reverse(by, workload: Workload) -> bool:
    """May `by` reverse or lift containment of this workload? Pages offer the buttons on
    this; containment_reverse refuses the same people (nobody lifts their own workload's)."""
    return by.has_perm(REVERSE) and not workload_services.owns(by, workload)


COMMENT_MAX = 5000  # the comment form's cap, for a comment left with a status change too
REASON_MAX = 500  # a containment's reason, and a reversal's (their columns' size)
CLOSED = (Finding.Status.RESOLVED, Finding.Status.FALSE_POSITIVE)


def status_label(status: str) -> str:
    """A status as the console names it: "False positive", not "false_positive"."""
    return str(Finding.Status(status).label)


def _comment_checked(comment: str, field: str = "comment", limit: int = COMMENT_MAX) -> str:
    """The text as kept, or a refusal: never cut short without a word."""
    comment = comment.strip()
    if len(comment) > limit:
        raise DomainError(
            f"Keep it to {limit} characters (it has {len(comment)}).",
            field=field,
            code="max_length",
        )
    return comment


def _illegal(finding: Finding, status: str) -> Conflict:
    now = status_label(finding.status).lower()
    hint = " Reopen it first." if finding.status in CLOSED else ""
    return Conflict(
        f"This finding is {now}: it cannot be marked {status_label(status).lower()}.{hint}",
        field="status",
        code="illegal_transition",
    )


def _last_status_change(finding: Finding) -> tuple[str, datetime] | None:
    """Who last set the finding's status and when (its newest status audit event): one
    query on the audit log's object index."""
    return (
        AuditEvent.objects.filter(
            object_type=Finding._meta.label_lower,
            object_id=str(finding.pk),
            action__in=[f"finding.{status}" for status in Finding.Status.values],
        )
        .order_by("-id")
        .values_list("actor_label", "created_at")
        .first()
    )


def _changed_meanwhile(finding: Finding) -> Conflict:
    """The page the person acted from showed another status: say who moved it, and when."""
    status = status_label(finding.status).lower()
    change = _last_status_change(finding)
    if change is None:
        who = f"Someone else marked this finding {status}"
    else:
        actor, at = change
        when = date_format(timezone.localtime(at), "Y-m-d H:i")
        who = f"{actor} marked this finding {status} at {when}"
    return Conflict(
        f"{who}, after you opened the page. Nothing was changed.",
        field="status",
        code="changed_meanwhile",
    )


def _set_status(finding: Finding, status: str, by, comment: str) -> Finding:
    if status not in ALLOWED_TRANSITIONS[finding.status]:
        raise _illegal(finding, status)
    before = audit_snapshot(finding, FINDING_AUDIT_FIELDS)
    finding.status = status
    finding.resolved_at = timezone.now() if status in CLOSED else None
    finding.save(update_fields=["status", "resolved_at", "updated_at"])
    if comment:
        FindingComment.objects.create(finding=finding, author=by, body=comment)
    audit_record(
        by=by,
        action=f"finding.{status}",
        obj=finding,
        before=before,
        after=audit_snapshot(finding, FINDING_AUDIT_FIELDS) | {"comment": comment},
    )
    return finding


@transaction.atomic
def finding_set_status(
    *, finding: Finding, status: str, by, comment: str = "", seen_status: str | None = None
) -> Finding:
    """open → acknowledged → resolved | false_positive (and reopen).

    `seen_status` is the status the person's page showed: when the finding has moved since,
    nothing is changed (Conflict, code `changed_meanwhile`, naming who moved it), so a
    decision taken on a stale page never lands, and never passes for a success. Without it
    (the API), asking for the status the finding has changes nothing but keeps the comment.
    """
    _require(by, TRIAGE)
    if status not in Finding.Status.values:
        raise DomainError("Unknown status.", field="status")
    comment = _comment_checked(comment)
    finding = Finding.objects.select_for_update().get(pk=finding.pk)
    if seen_status is not None and seen_status != finding.status:
        raise _changed_meanwhile(finding)
    if status == finding.status:
        if seen_status is not None:  # the page offers no such button: a replayed form
            raise Conflict(
                f"This finding is {status_label(status).lower()} already. Nothing was changed.",
                field="status",
                code="unchanged",
            )
        if comment:
            _comment_save(finding, comment, by)
        return finding
    return _set_status(finding, status, by, comment)


@dataclass(frozen=True)
class BulkTriage:
    changed: list[int]
    # Findings left as they were, by the status that kept them from the move.
    skipped: dict[str, list[int]]


@transaction.atomic
def findings_bulk_set_status(
    *, finding_ids: list[int], status: str, by, comment: str = ""
) -> BulkTriage:
    """Triage many at once; findings that cannot make the move are left as they are, and
    named in the result with the status that kept them."""
    _require(by, TRIAGE)
    if status not in Finding.Status.values:
        raise DomainError("Unknown status.", field="status")
    comment = _comment_checked(comment)
    changed: list[int] = []
    skipped: dict[str, list[int]] = {}
    for finding in Finding.objects.select_for_update().filter(pk__in=finding_ids).order_by("pk"):
        if status in ALLOWED_TRANSITIONS[finding.status]:
            _set_status(finding, status, by, comment)
            changed.append(finding.pk)
        else:
            skipped.setdefault(finding.status, []).append(finding.pk)
    return BulkTriage(changed, skipped)


@transaction.atomic
def finding_assign(*, finding: Finding, assignee, by) -> Finding:
    _require(by, TRIAGE)
    if assignee is not None and not assignee.has_perm(TRIAGE):
        raise DomainError("Assign to someone who can triage findings.", field="assignee")
    finding = Finding.objects.select_for_update().get(pk=finding.pk)
    before = audit_snapshot(finding, FINDING_AUDIT_FIELDS)
    finding.assignee = assignee
    finding.save(update_fields=["assignee", "updated_at"])
    audit_record(
        by=by,
        action="finding.assign",
        obj=finding,
        before=before,
        after=audit_snapshot(finding, FINDING_AUDIT_FIELDS),
    )
    return finding


@transaction.atomic
def finding_comment_add(*, finding: Finding, body: str, by) -> FindingComment:
    _require(by, TRIAGE)
    if not body.strip():
        raise DomainError("Write something.", field="body", code="required")
    return _comment_save(finding, _comment_checked(body, "body"), by)


def _comment_save(finding: Finding, body: str, by) -> FindingComment:
    comment = FindingComment.objects.create(finding=finding, author=by, body=body)
    audit_record(by=by, action="finding.comment", obj=finding, after={"comment": comment.body})
    return comment


def finding_merge(*, duplicate: Finding, into: Finding) -> Finding:
    """Fold a finding into another of the same signal (the system's doing, inside the
    caller's transaction), losing nothing a reviewer made: evidence, comments and
    containment actions move over, and an assignee fills an empty one. The survivor keeps
    its own status, as a signal that fires again does; the audit event keeps the
    duplicate's."""
    # Both findings' rows (as a reviewer's containment takes its finding's), then their
    # containment records, in id order before they are read (the order a lift takes records,
    # then the workload): a containment or reversal running meanwhile is seen finished, not
    # half done, so no measure is dropped, doubled or kept on a stale reading.
    list(
        Finding.objects.select_for_update()
        .filter(pk__in=(duplicate.pk, into.pk))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    list(
        ContainmentAction.objects.select_for_update()
        .filter(finding__in=(duplicate.pk, into.pk))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    before = audit_snapshot(into, FINDING_AUDIT_FIELDS) | {
        "merged_finding": audit_snapshot(duplicate, FINDING_AUDIT_FIELDS)
        | {"id": duplicate.pk, "evidence": duplicate.evidence},
        "merged_containment": list(
            ContainmentAction.objects.filter(finding=duplicate).values("id", "action", "limits")
        ),
    }
    into.evidence = [*into.evidence, *(e for e in duplicate.evidence if e not in into.evidence)]
    into.occurred_at = min(into.occurred_at, duplicate.occurred_at)
    if duplicate.severity_rank > into.severity_rank:
        into.severity, into.severity_rank = duplicate.severity, duplicate.severity_rank
    if into.assignee_id is None:
        into.assignee_id = duplicate.assignee_id
    FindingComment.objects.filter(finding=duplicate).update(finding=into)
    # One record in force of a workload-wide measure per finding (of a revocation, per
    # grant): where both hold one, the survivor's stands (the duplicate's is in the audit).
    # Every other record, narrowings and reversed ones included, moves over whole: a
    # narrowing's caps and the time it was taken are what evaluation judges sessions by.
    in_force = {
        _measure(a): a for a in ContainmentAction.objects.filter(finding=into, reversed_at=None)
    }
    for action in ContainmentAction.objects.filter(finding=duplicate):
        if action.reversed_at is None and _measure(action) in in_force:
            continue
        action.finding = into
        action.save(update_fields=["finding"])
    into.save(
        update_fields=[
            "evidence",
            "occurred_at",
            "severity",
            "severity_rank",
            "assignee",
            "updated_at",
        ]
    )
    duplicate.delete()
    audit_record(
        by=None,
        action="finding.merged",
        obj=into,
        before=before,
        after=audit_snapshot(into, FINDING_AUDIT_FIELDS) | {"evidence": into.evidence},
    )
    return into


def _measure(action: ContainmentAction) -> tuple[str, int | None]:
    """What a containment record holds, as far as one finding holds it once: its measure,
    for a revocation its grant, and each narrowing its own."""
    if action.action == ContainmentAction.Action.REVOKE_GRANT:
        return action.action, action.grant_id
    if action.action == ContainmentAction.Action.NARROW_SESSIONS:
        return action.action, action.pk
    return action.action, None


def triager_get(username: str | None):
    """The user a finding may be assigned to, by username (None: nobody)."""
    if username is None:
        return None
    user = triagers().filter(username=username).first()
    if user is None:
        raise DomainError("No user by that name can triage findings.", field="assignee")
    return user


def triagers():
    """Users a finding may be assigned to."""
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__permissions__codename="triage_finding")
        .distinct()
        .order_by("username")
    )


def tier_contains(finding: Finding) -> bool:
    """Does the workload's tier contain this finding by its rule?"""
    tier = finding.workload.tier
    if tier is None or finding.severity not in ("high", "critical"):
        return False
    if tier.gate_sessions_on_high:
        return True
    return finding.severity == "critical" and (tier.suspend_on_critical or tier.revoke_on_critical)


def finding_contain(*, finding: Finding) -> list[ContainmentAction]:
    """Containment for a finding, as its workload's tier says: a high or critical one may make
    each session need an approval; a critical one may suspend the workload and/or revoke the
    grant it abused. Runs inside the evaluator's transaction; audited by the workload services
    it calls (actor: system)."""
    if not tier_contains(finding):
        return []
    # Read under the row lock (the status decides what to do, and a reversal may have just
    # reinstated the workload).
    finding.workload = (
        Workload.objects.select_for_update(of=("self",))
        .select_related("tier")
        .get(pk=finding.workload_id)
    )
    tier = finding.workload.tier
    if tier is None:  # declassified meanwhile
        return []
    # The grant to revoke, locked before the first audit event (the chain's lock), the order
    # a console revoke takes: grant, then chain. Locked after, it waited for a revoke that
    # waited for the chain.
    grant = None
    if finding.severity == "critical" and tier.revoke_on_critical and finding.tool:
        grant = (
            Entitlement.objects.select_for_update()
            .filter(
                workload=finding.workload,
                tool__slug=finding.tool,
                status=Entitlement.Status.ACTIVE,
            )
            .first()
        )
    actions = []
    if tier.gate_sessions_on_high and finding.workload.status in GATEABLE:
        _gate_sessions(
            finding,
            by=None,
            reason=f"{finding.get_severity_display()} finding #{finding.pk}: {finding.summary}",
        )
        # Recorded even when the workload was gated already: this finding holds it too.
        actions.append(
            ContainmentAction.objects.create(
                finding=finding,
                action=ContainmentAction.Action.GATE_SESSIONS,
                workload=finding.workload,
                reason=_tier_reason(tier, finding),
            )
        )
    if finding.severity != "critical":
        return actions
    reason = f"Critical finding #{finding.pk}: {finding.summary}"
    suspended = finding.workload.status == Workload.Status.SUSPENDED
    if tier.suspend_on_critical and (
        suspended or finding.workload.status == Workload.Status.ACTIVE
    ):
        if not suspended:
            workload_services.workload_set_status(
                workload=finding.workload, status=Workload.Status.SUSPENDED, by=None, reason=reason
            )
        # Recorded even when another finding had suspended it already: this finding holds
        # the suspension too, so reversing the other does not lift it (containment_reverse).
        actions.append(
            ContainmentAction.objects.create(
                finding=finding,
                action=ContainmentAction.Action.SUSPEND_WORKLOAD,
                workload=finding.workload,
                reason=_tier_reason(tier, finding),
            )
        )
    if grant is not None:
        workload_services.entitlement_revoke(grant=grant, by=None, reason=reason)
        actions.append(
            ContainmentAction.objects.create(
                finding=finding,
                action=ContainmentAction.Action.REVOKE_GRANT,
                workload=finding.workload,
                grant=grant,
                reason=_tier_reason(tier, finding),
            )
        )
    return actions


def _tier_reason(tier, finding: Finding) -> str:
    return f"The {tier.name} tier's rule for a {finding.severity} finding."


def _gate_sessions(finding: Finding, *, by, reason: str) -> None:
    """Make each session need an approval, and end the approval of the finding's own session:
    a gate already standing would otherwise let the session that misbehaved run on."""
    workload_services.workload_require_session_approval(
        workload=finding.workload, required=True, by=by, reason=reason
    )
    if finding.session is not None:
        workload_services.session_approvals_end(
            workload=finding.workload,
            by=by,
            reason=reason,
            sessions=[finding.session.external_id],
        )


def containment_options(finding: Finding) -> list[tuple[str, str]]:
    """What a person may still do by hand about this finding: (action, label)."""
    if finding.status not in CONTAINABLE:
        return []
    # A measure reversed may be taken again (a mistaken narrowing corrected, say).
    taken = set(finding.containment.filter(reversed_at=None).values_list("action", flat=True))
    options: list[tuple[str, str]] = []
    if (
        ContainmentAction.Action.SUSPEND_WORKLOAD not in taken
        and finding.workload.status == Workload.Status.ACTIVE
    ):
        options.append((ContainmentAction.Action.SUSPEND_WORKLOAD, "Suspend the workload"))
    if (
        ContainmentAction.Action.REVOKE_GRANT not in taken
        and finding.tool
        and Entitlement.objects.filter(
            workload=finding.workload, tool__slug=finding.tool, status=Entitlement.Status.ACTIVE
        ).exists()
    ):
        options.append((ContainmentAction.Action.REVOKE_GRANT, f"Revoke its {finding.tool} grant"))
    if ContainmentAction.Action.GATE_SESSIONS not in taken and finding.workload.status in GATEABLE:
        options.append(
            (ContainmentAction.Action.GATE_SESSIONS, "Require an approval for each session")
        )
    return options


@dataclass(frozen=True)
class Lift:
    reversed_for: list[int]  # findings whose records were reversed
    # Findings whose record of the measure was added while the lift ran (evaluation or a
    # reviewer containing anew): it still holds, and nothing was lifted.
    still_held_by: list[int]


@transaction.atomic
def containment_lift(*, workload: Workload, action: str, by, reason: str) -> Lift:
    """Lift a workload-wide measure (a suspension or a session gate) in one step: reverse
    every finding's unreversed record that holds it, each audited as its own reversal. A
    workload that looped may have been contained by dozens of findings."""
    _require(by, REVERSE)
    if action not in HELD_BY_EVERY_FINDING:
        raise DomainError("Choose a suspension or a session gate to lift.", field="action")
    if not reason.strip():
        raise DomainError("Say why the containment is reversed.", field="reason", code="required")
    # The records first, in id order, then (in containment_reverse) the workload: the order a
    # single reversal takes, so a lift and a reversal of one of its records queue, not deadlock.
    records = list(
        ContainmentAction.objects.select_for_update()
        .filter(workload=workload, action=action, reversed_at__isnull=True)
        .order_by("pk")
    )
    if not records:
        raise Conflict("No finding's containment holds this any more.", code="not_held")
    _lock_for_reversal(workload.pk)  # before the first reversal's audit event
    reversal = None
    for record in records:
        reversal = containment_reverse(action=record, by=by, reason=reason)
    assert reversal is not None
    return Lift([record.finding_id for record in records], reversal.still_held_by)


def _lock_for_reversal(workload_id: int) -> None:
    """The workload's row, then its pending session-run requests (a lifted gate cancels
    them) and its session approvals in force (a lifted gate ends them), all before any audit
    event: denying, cancelling or expiring a request, and revoking or expiring an approval,
    take the row, then the audit chain, and the other order deadlocks with them."""
    Workload.objects.select_for_update().filter(pk=workload_id).first()
    list(
        AccessRequest.objects.select_for_update()
        .filter(
            workload_id=workload_id,
            kind=AccessRequest.Kind.SESSION_RUN,
            status=AccessRequest.Status.PENDING,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    _lock_rows(SessionApproval.objects.filter(workload_id=workload_id, status="active"))


def containment_prelock(findings: list[Finding]) -> None:
    """For findings about to be contained, with their workloads locked: the grants a critical
    one would revoke and the session approvals a gate would end, locked before the first
    containment writes an audit event (the chain's lock). A console revoke takes a grant,
    then the chain; revoking an approval takes it, then the chain. Locked later, after an
    earlier finding's audit in the same batch, either closed a cycle."""
    abused = {(f.workload_id, f.tool) for f in findings if f.severity == "critical" and f.tool}
    if abused:
        _lock_rows(
            Entitlement.objects.filter(
                workload_id__in={workload_id for workload_id, _tool in abused},
                tool__slug__in={tool for _workload_id, tool in abused},
                status=Entitlement.Status.ACTIVE,
            )
        )
    _lock_rows(
        SessionApproval.objects.filter(
            workload_id__in={f.workload_id for f in findings}, status="active"
        )
    )


def _lock_rows(queryset) -> None:
    list(queryset.select_for_update().order_by("pk").values_list("pk", flat=True))


def other_holders(finding: Finding) -> dict[str, list[int]]:
    """For each workload-wide measure, the other findings whose unreversed record holds it
    on this finding's workload (one query)."""
    rows = (
        ContainmentAction.objects.filter(
            workload_id=finding.workload_id,
            action__in=HELD_BY_EVERY_FINDING,
            reversed_at__isnull=True,
        )
        .exclude(finding_id=finding.pk)
        .order_by("finding_id")
        .values_list("action", "finding_id")
    )
    holders: dict[str, list[int]] = {}
    for action, finding_id in rows:
        holders.setdefault(action, []).append(finding_id)
    return holders


def narrowing_offered(finding: Finding) -> bool:
    """May a person still narrow the session limits over this finding?"""
    return (
        finding.status in CONTAINABLE
        and finding.workload.status in GATEABLE
        and finding.workload.tier_id is not None
        and not finding.containment.filter(
            action=ContainmentAction.Action.NARROW_SESSIONS, reversed_at=None
        ).exists()
    )


@transaction.atomic
def containment_apply(
    *, finding: Finding, action: str, by, reason: str, limits: dict | None = None
) -> ContainmentAction:
    """Tighten access by hand over a finding, beyond what the tier's rule did by itself:
    suspend its workload, revoke the grant of the tool it names, make each of its sessions
    need an approval, or narrow its session limits to `limits` (caps, each below the limit in
    force). Reversible like automatic containment; the person and the reason are in the
    audit."""
    _require(by, CONTAIN)
    if not reason.strip():
        raise DomainError("Say why.", field="reason", code="required")
    reason = _comment_checked(reason, "reason", REASON_MAX)
    finding = Finding.objects.select_for_update().select_related("workload").get(pk=finding.pk)
    if finding.status not in CONTAINABLE:
        raise Conflict(f"The finding is {finding.status}: reopen it to contain over it.")
    if ContainmentAction.objects.filter(finding=finding, action=action, reversed_at=None).exists():
        raise Conflict("This finding's containment already does that; reverse it first.")
    workload = finding.workload
    why = f"Finding #{finding.pk}, contained by {by.get_username()}: {reason.strip()}"
    grant = None
    caps: dict[str, int] = {}
    if action == ContainmentAction.Action.SUSPEND_WORKLOAD:
        if workload.status != Workload.Status.ACTIVE:
            raise Conflict(f"The workload is {workload.status}, not active.")
        workload_services.workload_set_status(
            workload=workload, status=Workload.Status.SUSPENDED, by=by, reason=why
        )
    elif action == ContainmentAction.Action.REVOKE_GRANT:
        grant = Entitlement.objects.filter(
            workload=workload, tool__slug=finding.tool or None, status=Entitlement.Status.ACTIVE
        ).first()
        if grant is None:
            raise Conflict(f"{workload.slug} holds no active grant of the tool this finding names.")
        workload_services.entitlement_revoke(grant=grant, by=by, reason=why, for_containment=True)
    elif action == ContainmentAction.Action.GATE_SESSIONS:
        if workload.status not in GATEABLE:
            raise Conflict(f"The workload is {workload.status}: it runs no sessions.")
        # Already gated by another finding: this one holds the gate too (HELD_BY_EVERY_FINDING).
        _gate_sessions(finding, by=by, reason=why)
    elif action == ContainmentAction.Action.NARROW_SESSIONS:
        caps = _narrow_sessions(workload, limits or {}, by=by, reason=why)
    else:
        raise DomainError("Choose what to do.", field="action")
    contained = ContainmentAction.objects.create(
        finding=finding,
        action=action,
        workload=workload,
        grant=grant,
        limits=caps,
        created_by=by,
        reason=reason,
    )
    audit_record(
        by=by,
        action="containment.apply",
        obj=finding,
        after={
            "action": action,
            "reason": reason.strip(),
            "grant": grant.pk if grant else None,
        }
        | ({"limits": caps} if caps else {}),
    )
    return contained


def _narrow_sessions(workload: Workload, limits: dict, *, by, reason: str) -> dict[str, int]:
    """Check the caps against the limits in force under the workload's lock (a concurrent
    narrowing or policy change is read as it landed), audit them on the workload, and move
    the policy version: the next decision holds sessions to them."""
    workload = (
        Workload.objects.select_for_update(of=("self",)).select_related("tier").get(pk=workload.pk)
    )
    if workload.status not in GATEABLE:
        raise Conflict(f"The workload is {workload.status}: it runs no sessions.")
    if workload.tier_id is None:
        raise Conflict("The workload is unclassified: it has no session limits to narrow.")
    in_force = effective_session_limits(workload=workload, at=timezone.now())
    caps = narrowing.caps_checked(limits, in_force)
    audit_record(
        by=by,
        action="workload.sessions_narrowed",
        obj=workload,
        before={name: in_force.get(name) for name in caps},
        after=caps | {"reason": reason},
    )
    policy_version_bump()
    return caps


@dataclass(frozen=True)
class Reversal:
    action: ContainmentAction
    # Findings whose own record of the same measure (a suspension, or sessions needing
    # approval) still holds it in force; none: the measure was lifted.
    still_held_by: list[int]
    # A revocation reversed while the workload held the tool again: nothing was granted.
    already_held: bool = False


@transaction.atomic
def containment_reverse(*, action: ContainmentAction, by, reason: str) -> Reversal:
    """Undo a suspension (reactivate, unless another finding's suspension still holds it), a
    gate (likewise), a narrowing (its caps stop holding) or a revocation (grant the tool
    again, same end date). It lifts a safeguard, so it says why:
    `reason` goes into the audit event."""
    _require(by, REVERSE)
    reason = reason.strip()
    if not reason:
        raise DomainError("Say why the containment is reversed.", field="reason", code="required")
    action = (
        ContainmentAction.objects.select_for_update(of=("self",))
        .select_related("grant__tool")
        .get(pk=action.pk)
    )
    if action.reversed_at is not None:
        raise Conflict("This containment was already reversed.")
    # The workload row, locked before the other holders are counted, serialises this with a
    # concurrent reversal or containment of the same workload (both take it too).
    _lock_for_reversal(action.workload_id)
    if workload_services.owns(by, action.workload):
        # Separation of duties, as for grants: nobody lifts a containment of their own workload.
        raise NotAllowed(
            "You own this workload: another person reverses its containment.",
            code="own_workload",
        )
    # Marked reversed first: the workload services refuse to lift a measure that an
    # unreversed containment record still holds.
    action.reversed_at = timezone.now()
    action.reversed_by = by
    action.reverse_reason = _comment_checked(reason, "reason", REASON_MAX)
    action.save(update_fields=["reversed_at", "reversed_by", "reverse_reason"])
    still_held: list[int] = []
    held = False
    why = f"Containment of finding #{action.finding_id} reversed: {reason}"
    if action.action == ContainmentAction.Action.NARROW_SESSIONS:
        # The caps live on the record: reversed, they stop holding; any other narrowing's
        # stand.
        audit_record(
            by=by,
            action="workload.sessions_widened",
            obj=action.workload,
            before=action.limits,
            after={"reason": why},
        )
        policy_version_bump()
    elif action.action in HELD_BY_EVERY_FINDING:
        # Another finding's record of the same measure, not reversed, keeps it in force.
        still_held = workload_services.findings_holding(action.workload, action.action)
        if not still_held and action.action == ContainmentAction.Action.GATE_SESSIONS:
            workload_services.workload_require_session_approval(
                workload=action.workload, required=False, by=by, reason=why
            )
            session_run_requests_cancel(workload=action.workload, by=by, reason=why)
        elif not still_held and action.workload.status == Workload.Status.SUSPENDED:
            workload_services.workload_set_status(
                workload=action.workload, status=Workload.Status.ACTIVE, by=by, reason=why
            )
    else:
        grant = action.grant
        now = timezone.now()
        if grant is None or (grant.valid_until is not None and grant.valid_until <= now):
            raise Conflict("The grant has lapsed meanwhile; request the tool again.")
        held = Entitlement.objects.filter(
            workload=action.workload, tool=grant.tool, status=Entitlement.Status.ACTIVE
        ).exists()
        if not held:
            # Restored as it was, its end no later than the tier now allows (the workload
            # may have moved to a tier with shorter grants since).
            valid_until = grant.valid_until
            if action.workload.tier is not None:  # else entitlement_grant says to classify
                longest = now + timedelta(days=action.workload.tier.max_grant_days)
                valid_until = min(valid_until or longest, longest)
            exceptions = tuple(
                e.rule.slug
                for e in RuleException.objects.filter(workload=action.workload).select_related(
                    "rule"
                )
                if e.is_valid_at(now)
            )
            workload_services.entitlement_grant(
                workload=action.workload,
                tool=grant.tool,
                by=by,
                valid_until=valid_until,
                constraints=grant.constraints,
                allow_exception_rules=exceptions,
                reason=f"Restored: the revocation by finding #{action.finding_id} was reversed.",
            )
        # Else the workload holds the tool again already (a merged finding's other revocation
        # restored it, or it was granted anew): the record is reversed, nothing granted twice.
    audit_record(
        by=by,
        action="containment.reverse",
        obj=action,
        after={
            "finding": action.finding_id,
            "action": action.action,
            "reason": reason,
            "still_held_by_findings": still_held,
        }
        | ({"tool_held_already": True} if held else {}),
    )
    return Reversal(action, still_held, already_held=held)
