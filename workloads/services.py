"""State changes to the catalogue: one transaction each, audited, policy version bumped."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.audit import audit_record, audit_snapshot
from governance.errors import Conflict, DomainError, NotAllowed, RuleViolation
from governance.models import ContainmentAction
from governance.policy_version import policy_version_bump
from workloads.combinations import (
    RuleSpec,
    rules_completed_by,
    tool_matches_every_group,
    tripped_alone,
)
from workloads.models import (
    CombinationRule,
    Entitlement,
    LoggingLevel,
    SensitivityTier,
    SessionApproval,
    SessionExtension,
    SessionLimitsChange,
    SessionPolicy,
    Tool,
    Workload,
)
from workloads.selectors import EXTENDED_LIMITS, window_ceilings

WORKLOAD_AUDIT_FIELDS = (
    "slug",
    "name",
    "purpose",
    "owner",
    "model_family",
    "environment",
    "data_categories",
    "status",
    "tier",
    "classification_rationale",
    "classified_by",
    "classified_at",
    "sessions_need_approval",
)
SESSION_APPROVAL_AUDIT_FIELDS = (
    "workload",
    "session",
    "status",
    "valid_from",
    "valid_until",
    "revoke_reason",
)
EXTENSION_AUDIT_FIELDS = (
    "workload",
    *EXTENDED_LIMITS,
    "status",
    "valid_from",
    "valid_until",
    "revoke_reason",
)
POLICY_AUDIT_FIELDS = (*SessionPolicy.LIMIT_FIELDS, "logging_level", "retention_days")
RULE_AUDIT_FIELDS = ("slug", "name", "description", "groups", "scope", "effect", "enabled")
OWN_WORKLOADS = "governance.request_entitlement"  # what makes a user an owner
TOOL_AUDIT_FIELDS = ("slug", "name", "capability_class", "risk", "mcp_server", "description")
GRANT_AUDIT_FIELDS = (
    "workload",
    "tool",
    "status",
    "valid_from",
    "valid_until",
    "constraints",
    "revoke_reason",
)

ALLOWED_STATUS_CHANGES: dict[str, set[str]] = {
    Workload.Status.DRAFT: {Workload.Status.ACTIVE, Workload.Status.RETIRED},
    Workload.Status.ACTIVE: {Workload.Status.SUSPENDED, Workload.Status.RETIRED},
    Workload.Status.SUSPENDED: {Workload.Status.ACTIVE, Workload.Status.RETIRED},
    Workload.Status.RETIRED: set(),
}


def _locked(workload: Workload) -> Workload:
    return (
        Workload.objects.select_for_update(of=("self",)).select_related("tier").get(pk=workload.pk)
    )


@transaction.atomic
def workload_register(
    *,
    by,
    slug: str,
    name: str,
    purpose: str,
    owner,
    model_family: str,
    environment: str,
    data_categories: list[str] | None = None,
) -> Workload:
    """Register a draft workload; it does nothing until an IAM admin classifies it."""
    if not owner.is_active or not owner.has_perm(OWN_WORKLOADS):
        raise DomainError(
            f"{owner.get_username()} may not own workloads: an owner requests their tools.",
            field="owner",
            code="not_an_owner",
        )
    if Workload.objects.filter(slug=slug).exists():
        raise Conflict(f"A workload with slug {slug!r} exists.", field="slug", code="duplicate")
    workload = Workload(
        slug=slug,
        name=name,
        purpose=purpose,
        owner=owner,
        model_family=model_family,
        environment=environment,
        data_categories=sorted(set(data_categories or [])),
    )
    workload.full_clean()
    try:
        with transaction.atomic():
            workload.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"A workload with slug {slug!r} exists.", field="slug") from exc
    SessionPolicy.objects.create(workload=workload)
    audit_record(
        by=by,
        action="workload.register",
        obj=workload,
        after=audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS),
    )
    policy_version_bump()
    return workload


@transaction.atomic
def workload_update(*, workload: Workload, by, **changes) -> Workload:
    """Change descriptive fields (name, purpose, model family, environment, data categories)."""
    editable = {"name", "purpose", "model_family", "environment", "data_categories"}
    unknown = set(changes) - editable
    if unknown:
        raise DomainError(f"Not editable here: {', '.join(sorted(unknown))}")
    workload = _locked(workload)
    before = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS)
    for name, value in changes.items():
        if name == "data_categories":
            value = sorted(set(value or []))
        setattr(workload, name, value)
    workload.full_clean()
    workload.save()
    after = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS)
    if after != before:
        audit_record(by=by, action="workload.update", obj=workload, before=before, after=after)
        policy_version_bump()
    return workload


@transaction.atomic
def workload_classify(*, workload: Workload, tier: SensitivityTier, by, rationale: str) -> Workload:
    """Place a workload in a tier, with a written rationale; it takes the tier's defaults."""
    if not rationale.strip():
        raise DomainError("Say why this tier fits.", field="rationale", code="required")
    workload = _locked(workload)
    if workload.status == Workload.Status.RETIRED:
        raise Conflict("A retired workload cannot be reclassified.")
    if workload.tier_id == tier.pk and workload.classification_rationale == rationale.strip():
        return workload  # saved again unchanged: nothing to record
    before = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS)
    policy, _ = SessionPolicy.objects.get_or_create(workload=workload)
    limits_before = session_limits(policy, workload.tier) if workload.tier else None
    workload.tier = tier
    workload.classification_rationale = rationale.strip()
    workload.classified_by = by
    workload.classified_at = timezone.now()
    workload.save()
    # Before the first audit event: the audit chain's lock comes after the grants' and the
    # windows' (as when one is revoked), or a revocation running meanwhile deadlocks with this.
    windows = list(
        SessionExtension.objects.select_for_update()
        .filter(
            workload=workload,
            status=SessionExtension.Status.ACTIVE,
            valid_until__gt=timezone.now(),  # one past its end, not yet marked, is over
        )
        .order_by("id")
    )
    # Then its pending requests, still before any audit record (the clamps below write
    # some): a denial or an expiry holds a request, then takes the audit chain.
    # The approvals flow sits on top of the catalogue; it is asked, not imported at load.
    from governance.approvals.services import pending_requests_lock, pending_requests_top_up

    pending = pending_requests_lock(workload)
    _clamp_grants_to_tier(workload, tier, by=by)
    _clamp_windows_to_tier(windows, tier, by=by)
    audit_record(
        by=by,
        action="workload.classify",
        obj=workload,
        before=before,
        after=audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS),
    )
    # After the move they follow from, in the trail as in time.
    _clamp_policy_to_tier(workload, policy, tier, by=by)
    pending_requests_top_up(pending, by)
    _session_limits_record(workload, limits_before, session_limits(policy, tier))
    policy_version_bump()
    return workload


def _clamp_grants_to_tier(workload: Workload, tier: SensitivityTier, *, by) -> None:
    """A move to a tier with shorter grants shortens the grants that would outlast it: each
    ends at most the tier's longest grant from now (or from its start, if later), as if
    granted today. Each shortened grant is audited. All the workload's active grants are
    locked, in id order, before any is written."""
    now = timezone.now()
    longest = timedelta(days=tier.max_grant_days)
    grants = list(
        Entitlement.objects.select_for_update()
        .filter(workload=workload, status=Entitlement.Status.ACTIVE)
        .order_by("id")
    )
    for grant in grants:
        end = max(grant.valid_from, now) + longest
        if grant.valid_until is not None and grant.valid_until <= end:
            continue
        before = audit_snapshot(grant, GRANT_AUDIT_FIELDS)
        grant.valid_until = end
        grant.save(update_fields=["valid_until"])
        audit_record(
            by=by,
            action="grant.shortened",
            obj=grant,
            before=before,
            after=audit_snapshot(grant, GRANT_AUDIT_FIELDS)
            | {"reason": f"The {tier.name} tier grants at most {longest.days} days."},
        )


def _clamp_windows_to_tier(windows: list[SessionExtension], tier: SensitivityTier, *, by) -> None:
    """A move to a stricter tier holds the session windows in force to it, as it does grants:
    each ends at most the tier's longest grant from now, and raises no limit past the tier's
    ceiling (window_ceilings) from now on. A window that has started and raised more keeps its
    past (evaluation judges sessions by it) and ends now; a held-down copy runs on in its
    place. Each change is audited."""
    now = timezone.now()
    end = now + timedelta(days=tier.max_grant_days)
    ceilings = window_ceilings(tier)
    for window in windows:
        held = {
            name: min(getattr(window, name), ceiling)
            for name, ceiling in ceilings.items()
            if getattr(window, name) is not None
        }
        ends = min(window.valid_until, max(window.valid_from, now) + (end - now))
        raised_past = any(held[name] != getattr(window, name) for name in held)
        if ends == window.valid_until and not raised_past:
            continue
        before = audit_snapshot(window, EXTENSION_AUDIT_FIELDS)
        why = {"reason": f"Held to the {tier.name} tier's limits."}
        if raised_past and window.valid_from < now:
            window.valid_until = now
            window.save(update_fields=["valid_until"])
            replacement = SessionExtension.objects.create(
                workload_id=window.workload_id,
                expiry_notified_at=window.expiry_notified_at,  # the same end, warned once
                **held,
                valid_from=now,
                valid_until=ends,
                granted_by=window.granted_by,
                request=window.request,
            )
            audit_record(
                by=by,
                action="extension.create",
                obj=replacement,
                after=audit_snapshot(replacement, EXTENSION_AUDIT_FIELDS)
                | why
                | {"replaces": window.pk},
            )
        else:
            window.valid_until = ends
            for name, value in held.items():
                setattr(window, name, value)
            window.save(update_fields=["valid_until", *held])
        audit_record(
            by=by,
            action="extension.shortened",
            obj=window,
            before=before,
            after=audit_snapshot(window, EXTENSION_AUDIT_FIELDS) | why,
        )


def overrides_refused(policy: SessionPolicy, tier: SensitivityTier) -> dict[str, tuple[str, str]]:
    """The overrides this tier does not allow, (code, message) by field: an override only
    tightens the tier, so no limit above its default, no lighter logging, no shorter
    retention."""
    refused = {}
    for name in SessionPolicy.LIMIT_FIELDS:
        value, ceiling = getattr(policy, name), getattr(tier, name)
        if value is not None and value > ceiling:
            hint = "; ask for a longer session window instead" if name in EXTENDED_LIMITS else ""
            refused[name] = ("above_tier", f"The {tier.name} tier allows at most {ceiling}{hint}.")
    if (
        policy.logging_level == LoggingLevel.METADATA
        and tier.logging_level == LoggingLevel.FULL_TRACE
    ):
        refused["logging_level"] = (
            "below_tier",
            f"The {tier.name} tier logs full traces; an override may only log more.",
        )
    if policy.retention_days is not None and policy.retention_days < tier.retention_days:
        refused["retention_days"] = (
            "below_tier",
            f"The {tier.name} tier keeps {tier.retention_days} days; "
            "an override may only keep longer.",
        )
    return refused


def _clamp_policy_to_tier(
    workload: Workload, policy: SessionPolicy, tier: SensitivityTier, *, by
) -> None:
    """A move to a stricter tier drops the overrides it no longer allows, audited."""
    refused = overrides_refused(policy, tier)
    if not refused:
        return
    before = audit_snapshot(policy, POLICY_AUDIT_FIELDS)
    for name in refused:
        setattr(policy, name, "" if name == "logging_level" else None)
    policy.save(update_fields=[*refused, "updated_at"])
    audit_record(
        by=by,
        action="session_policy.update",
        obj=workload,
        object_type="workloads.sessionpolicy",
        before=before,
        after=audit_snapshot(policy, POLICY_AUDIT_FIELDS)
        | {"reason": f"Overrides the {tier.name} tier does not allow were dropped."},
    )


def session_limits(policy: SessionPolicy, tier: SensitivityTier) -> dict[str, int]:
    """The limits a session runs under, before any extension or narrowing."""
    effective = policy.effective(tier)
    return {name: effective[name] for name in SessionPolicy.LIMIT_FIELDS}


NO_LIMITS = dict.fromkeys(SessionPolicy.LIMIT_FIELDS)  # an unclassified workload's


def _session_limits_record(workload: Workload, before: dict | None, after: dict) -> None:
    """Append the workload's new session limits to their history (the workload row locked;
    `before` None while it was unclassified, when no limit held). A workload with no history
    yet first gets the limits it had until now, from its registration (migration 0018
    rebuilt the history of older workloads from the audit trail), so the change does not
    reach back over sessions run before it."""
    latest = (
        SessionLimitsChange.objects.filter(workload=workload)
        .order_by("-effective_from", "-id")
        .only("effective_from", "limits")
        .first()
    )
    now = timezone.now()
    if latest is None:
        latest = SessionLimitsChange.objects.create(
            workload=workload,
            effective_from=workload.created_at,
            limits=NO_LIMITS if before is None else before,
        )
    if latest.limits != after:
        # Never before the last record, whatever this host's clock says.
        SessionLimitsChange.objects.create(
            workload=workload, effective_from=max(now, latest.effective_from), limits=after
        )


def status_change_needs_reason(current: str, target: str) -> bool:
    """Every change but a draft's first activation."""
    return not (current == Workload.Status.DRAFT and target == Workload.Status.ACTIVE)


@transaction.atomic
def workload_set_status(*, workload: Workload, status: str, by, reason: str = "") -> Workload:
    workload = _locked(workload)
    if status == workload.status:
        return workload
    if status not in ALLOWED_STATUS_CHANGES[workload.status]:
        raise Conflict(f"A {workload.status} workload cannot become {status}.", field="status")
    if status == Workload.Status.ACTIVE and not workload.is_classified:
        raise Conflict(
            "Classify the workload before activating it.", field="status", code="unclassified"
        )
    if status_change_needs_reason(workload.status, status) and not reason.strip():
        # Suspending, reinstating and retiring change what a running agent may do: the audit
        # keeps why. (A first activation follows the classification, which has its rationale.)
        raise DomainError("Say why.", field="reason", code="required")
    if (
        workload.status == Workload.Status.SUSPENDED
        and status == Workload.Status.ACTIVE
        and owns(by, workload)
    ):
        # Separation of duties, as for grants and containment: nobody lifts a suspension of
        # their own workload.
        raise NotAllowed(
            "You own this workload: another person reinstates it.", code="own_workload"
        )
    if workload.status == Workload.Status.SUSPENDED and status == Workload.Status.ACTIVE:
        held_by = suspending_findings(workload)
        if held_by:
            # A finding's containment holds it: lifting it goes through that containment, so
            # its record is reversed with a reason and cannot be reversed again later.
            raise Conflict(
                "Suspended by the containment of finding "
                + ", ".join(f"#{pk}" for pk in held_by)
                + ": reverse it from the finding's page.",
                field="status",
                code="contained",
            )
    before = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS)
    workload.status = status
    workload.save()
    after = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS) | {"reason": reason}
    audit_record(by=by, action=f"workload.{status}", obj=workload, before=before, after=after)
    policy_version_bump()
    return workload


def findings_holding(workload: Workload, action: str) -> list[int]:
    """The findings whose unreversed containment holds a measure (`action`) on the workload."""
    return list(
        ContainmentAction.objects.filter(workload=workload, action=action, reversed_at__isnull=True)
        .order_by("finding_id")
        .values_list("finding_id", flat=True)
    )


def suspending_findings(workload: Workload) -> list[int]:
    return findings_holding(workload, ContainmentAction.Action.SUSPEND_WORKLOAD)


@transaction.atomic
def workload_require_session_approval(
    *, workload: Workload, required: bool, by, reason: str
) -> Workload:
    """Containment's lighter hand than suspension: while set, the decision endpoint lets a
    session's calls through only when an approved session-run request names that session."""
    workload = _locked(workload)
    if workload.sessions_need_approval == required:
        return workload
    before = audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS)
    workload.sessions_need_approval = required
    workload.save(update_fields=["sessions_need_approval", "updated_at"])
    # Approvals belong to the gate they were given under: none outlives it into the next.
    # (The requests filed under it are cancelled by the reversal that lifts it.)
    why = f"Sessions gate {'set' if required else 'lifted'}: {reason}"
    session_approvals_end(workload=workload, by=by, reason=why)
    audit_record(
        by=by,
        action="workload.sessions_gated" if required else "workload.sessions_ungated",
        obj=workload,
        before=before,
        after=audit_snapshot(workload, WORKLOAD_AUDIT_FIELDS) | {"reason": reason},
    )
    policy_version_bump()
    return workload


def session_approvals_end(
    *, workload: Workload, by, reason: str, sessions: list[str] | None = None
) -> int:
    """Revoke the workload's session approvals in force (all, or those of `sessions`),
    audited; the policy version moves when any was. Called inside the caller's transaction,
    with the workload row locked."""
    approvals = SessionApproval.objects.select_for_update().filter(
        workload=workload, status=SessionApproval.Status.ACTIVE
    )
    if sessions is not None:
        approvals = approvals.filter(session__in=sessions)
    now = timezone.now()
    ended = 0
    for approval in approvals:
        before = audit_snapshot(approval, SESSION_APPROVAL_AUDIT_FIELDS)
        approval.status = SessionApproval.Status.REVOKED
        approval.revoked_at = now
        approval.revoked_by = by if getattr(by, "pk", None) else None
        approval.revoke_reason = reason
        approval.save(update_fields=["status", "revoked_at", "revoked_by", "revoke_reason"])
        after = audit_snapshot(approval, SESSION_APPROVAL_AUDIT_FIELDS)
        audit_record(
            by=by, action="session_approval.revoke", obj=approval, before=before, after=after
        )
        ended += 1
    if ended:
        policy_version_bump()
    return ended


@transaction.atomic
def session_policy_update(*, workload: Workload, by, **values) -> SessionPolicy:
    """Override session limits; a limit may tighten the tier default, never loosen it."""
    workload = _locked(workload)
    if workload.tier is None:
        raise Conflict(
            "Classify the workload before setting its session policy.", code="unclassified"
        )
    policy, _ = SessionPolicy.objects.select_for_update().get_or_create(workload=workload)
    before = audit_snapshot(policy, POLICY_AUDIT_FIELDS)
    limits_before = session_limits(policy, workload.tier)
    for name, value in values.items():
        if name not in POLICY_AUDIT_FIELDS:
            raise DomainError(f"Unknown session setting {name}.", field=name)
        if name in SessionPolicy.LIMIT_FIELDS and value is not None and value < 1:
            raise DomainError("Must be at least 1.", field=name)
        if name == "retention_days" and value is not None and not 1 <= value <= 3650:
            raise DomainError("Keep between 1 and 3650 days.", field=name)
        setattr(policy, name, value if value != "" else ("" if name == "logging_level" else None))
    for name, (code, message) in overrides_refused(policy, workload.tier).items():
        if name in values:  # an older override the tier refuses is left to the reclassification
            raise DomainError(message, field=name, code=code)
    effective = policy.effective(workload.tier)
    if {"idle_timeout_seconds", "max_session_seconds"} & values.keys() and (
        effective["idle_timeout_seconds"] > effective["max_session_seconds"]
    ):
        raise DomainError(
            f"Longer than the session itself ({effective['max_session_seconds']} s): "
            "it would never apply.",
            field="idle_timeout_seconds",
            code="idle_past_session",
        )
    policy.save()
    after = audit_snapshot(policy, POLICY_AUDIT_FIELDS)
    if after != before:
        _session_limits_record(workload, limits_before, session_limits(policy, workload.tier))
        audit_record(
            by=by,
            action="session_policy.update",
            obj=workload,
            object_type="workloads.sessionpolicy",
            before=before,
            after=after,
        )
        policy_version_bump()
    return policy


@transaction.atomic
def tool_save(*, by, tool: Tool | None = None, **fields) -> Tool:
    """Create a tool, or change one; capability class changes re-evaluate rules next time."""
    creating = tool is None
    tool = Tool() if tool is None else Tool.objects.select_for_update().get(pk=tool.pk)
    before = None if creating else audit_snapshot(tool, TOOL_AUDIT_FIELDS)
    for name, value in fields.items():
        setattr(tool, name, value)
    tool.full_clean()
    if creating or before is None or before["capability_class"] != tool.capability_class:
        _refuse_one_tool_rules(tool)
    tool.save()
    audit_record(
        by=by,
        action="tool.create" if creating else "tool.update",
        obj=tool,
        before=before,
        after=audit_snapshot(tool, TOOL_AUDIT_FIELDS),
    )
    policy_version_bump()
    return tool


def _refuse_one_tool_rules(tool: Tool) -> None:
    """A capability class that would let this tool alone match every group of an enabled
    rule is refused, as the rule itself would be: the rule would then forbid the tool, and
    every request and session that used it."""
    for rule in CombinationRule.objects.filter(enabled=True).order_by("slug"):
        if tool_matches_every_group(rule.groups, tool.slug, tool.capability_class):
            raise DomainError(
                f"As {tool.get_capability_class_display()}, {tool.slug} alone would match every "
                f"group of rule {rule.name} ({rule.slug}): change the rule first.",
                field="capability_class",
                code="tripped_alone",
            )


@transaction.atomic
def combination_rule_save(*, by, rule: CombinationRule | None = None, **fields) -> CombinationRule:
    creating = rule is None
    rule = (
        CombinationRule()
        if rule is None
        else CombinationRule.objects.select_for_update().get(pk=rule.pk)
    )
    before = None if creating else audit_snapshot(rule, RULE_AUDIT_FIELDS)
    for name, value in fields.items():
        setattr(rule, name, value)
    groups = rule.groups
    if (
        not isinstance(groups, list)
        or len(groups) < 2
        or not all(isinstance(g, list) and g and all(isinstance(i, str) for i in g) for g in groups)
    ):
        raise DomainError("A rule needs at least two non-empty groups.", field="groups")
    alone = None
    if rule.enabled:  # a rule already wrong can still be switched off
        alone = tripped_alone(groups, dict(Tool.objects.values_list("slug", "capability_class")))
    if alone is not None:
        raise DomainError(
            f"{alone} alone would match every group: a rule forbids tools meeting, so no tool "
            "may match two groups (to keep a tool away, do not grant it).",
            field="groups",
            code="tripped_alone",
        )
    rule.full_clean()
    rule.save()
    audit_record(
        by=by,
        action="rule.create" if creating else "rule.update",
        obj=rule,
        before=before,
        after=audit_snapshot(rule, RULE_AUDIT_FIELDS),
    )
    policy_version_bump()
    return rule


def rule_spec(rule: CombinationRule) -> RuleSpec:
    return RuleSpec(
        rule.slug, rule.name, tuple(frozenset(g) for g in rule.groups), rule.effect, rule.scope
    )


def rule_specs(scopes: tuple[str, ...]) -> list[RuleSpec]:
    return [rule_spec(r) for r in CombinationRule.objects.filter(enabled=True, scope__in=scopes)]


def active_tools_of(workload: Workload, at: datetime) -> dict[str, str]:
    """Tool slug → capability class for the grants valid at `at`."""
    grants = Entitlement.objects.filter(workload=workload).select_related("tool")
    return {g.tool.slug: g.tool.capability_class for g in grants if g.is_valid_at(at)}


def static_rules_completed(workload: Workload, tools: list[Tool], at=None) -> list[RuleSpec]:
    """Static combination rules that granting `tools` would trip with the current grants."""
    at = at or timezone.now()
    specs = rule_specs((CombinationRule.Scope.STATIC, CombinationRule.Scope.BOTH))
    added = {t.slug: t.capability_class for t in tools}
    return rules_completed_by(specs, active_tools_of(workload, at), added)


def owns(by, workload: Workload) -> bool:
    """`by` is a person (not a service token, not the system) who owns `workload`: separation
    of duties keeps such a person from granting it tools or lifting its suspension."""
    from django.contrib.auth.models import AbstractBaseUser

    return isinstance(by, AbstractBaseUser) and by.pk == workload.owner_id


@transaction.atomic
def entitlement_grant(
    *,
    workload: Workload,
    tool: Tool,
    by,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    constraints: dict | None = None,
    allow_exception_rules: tuple[str, ...] = (),
    request=None,
    reason: str = "",
) -> Entitlement:
    """Grant a tool. Combination rules are checked against the workload's current grants:
    a forbid rule blocks; an exception-required rule blocks unless its slug is in
    `allow_exception_rules` (the approval flow passes the approved exceptions).

    The tier's max_grant_days is the longest grant: with no end given, the grant lasts that
    long (a tier with grant_end_required refuses instead). No grant is open-ended.

    Separation of duties: a person never grants their own workload a tool directly (nor
    restores one by reversing its revocation); an owner's tools come through an access
    request that others approve. A grant without a request says why (`reason`, audited), as
    a request's justification does."""
    if request is None and not reason.strip():
        raise DomainError("Say why it needs the tool.", field="reason", code="required")
    workload = _locked(workload)
    if request is None and owns(by, workload):
        raise NotAllowed(
            "You own this workload: request the tool, and another person approves it.",
            code="own_workload",
        )
    now = timezone.now()
    valid_from = valid_from or now
    if workload.status == Workload.Status.RETIRED:
        raise Conflict("A retired workload cannot be granted tools.")
    if workload.tier is None:
        raise Conflict("Classify the workload before granting it tools.", code="unclassified")
    if valid_until is not None and valid_until <= valid_from:
        raise DomainError("The end must be after the start.", field="valid_until")
    longest = timedelta(days=workload.tier.max_grant_days)
    if valid_until is None and workload.tier.grant_end_required:
        raise DomainError(
            f"The {workload.tier.name} tier requires an end date.",
            field="valid_until",
            code="end_required",
        )
    if valid_until is None:
        valid_until = valid_from + longest
    if valid_until - valid_from > longest:
        raise DomainError(
            f"The {workload.tier.name} tier grants at most {workload.tier.max_grant_days} days.",
            field="valid_until",
            code="too_long",
        )
    for rule in static_rules_completed(workload, [tool], now):
        if rule.effect == CombinationRule.Effect.FORBID:
            raise RuleViolation(
                f"Blocked by rule {rule.name} ({rule.slug}).", detail={"rule": rule.slug}
            )
        if rule.slug not in allow_exception_rules:
            raise RuleViolation(
                f"Rule {rule.name} ({rule.slug}) needs an approved exception.",
                code="exception_required",
                detail={"rule": rule.slug},
            )
    if Entitlement.objects.filter(workload=workload, tool=tool, status="active").exists():
        raise Conflict(f"{workload.slug} already has an active grant of {tool.slug}.")
    grant = Entitlement.objects.create(
        workload=workload,
        tool=tool,
        valid_from=valid_from,
        valid_until=valid_until,
        constraints=constraints or {},
        granted_by=by if getattr(by, "pk", None) else None,
        request=request,
    )
    after = audit_snapshot(grant, GRANT_AUDIT_FIELDS)
    audit_record(
        by=by,
        action="grant.create",
        obj=grant,
        after=after | {"reason": reason.strip()} if request is None else after,
    )
    policy_version_bump()
    return grant


@transaction.atomic
def entitlement_revoke(
    *, grant: Entitlement, by, reason: str, for_containment: bool = False
) -> Entitlement:
    """`for_containment`: the caller checked the containment permission (a reviewer may revoke
    over a finding: tightening only); the person is still the one audited."""
    if not reason.strip():
        raise DomainError("Say why the grant is revoked.", field="reason", code="required")
    grant = Entitlement.objects.select_for_update().get(pk=grant.pk)
    if grant.status != Entitlement.Status.ACTIVE:
        raise Conflict(f"The grant is already {grant.status}.")
    if (
        getattr(by, "pk", None)
        and not for_containment
        and not (by.has_perm("workloads.grant_entitlement") or grant.workload.owner_id == by.pk)
    ):
        raise NotAllowed("Only an IAM admin or the workload's owner may revoke a grant.")
    before = audit_snapshot(grant, GRANT_AUDIT_FIELDS)
    grant.status = Entitlement.Status.REVOKED
    grant.revoked_at = timezone.now()
    grant.revoked_by = by if getattr(by, "pk", None) else None
    grant.revoke_reason = reason.strip()
    grant.save()
    audit_record(
        by=by,
        action="grant.revoke",
        obj=grant,
        before=before,
        after=audit_snapshot(grant, GRANT_AUDIT_FIELDS),
    )
    policy_version_bump()
    return grant
