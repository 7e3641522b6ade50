"""Reads of the catalogue, scoped to what the asking user (or token) may see."""

from datetime import timedelta

from django.conf import settings
from django.db.models import CharField, Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast, Coalesce
from django.http import Http404

from governance.models import AuditEvent
from governance.tokens import ServicePrincipal
from workloads.models import (
    CombinationRule,
    Entitlement,
    SensitivityTier,
    Tool,
    Workload,
)


def workloads_visible_to(user) -> QuerySet[Workload]:
    """Deny by default: everything, own workloads, a token's bound workloads, or nothing."""
    qs = Workload.objects.all()
    if isinstance(user, ServicePrincipal):
        token = user.token
        return qs if token.all_workloads else qs.filter(tokens=token)
    if not user.is_authenticated:
        return qs.none()
    if user.has_perm("workloads.view_all_workloads"):
        return qs
    if user.has_perm("governance.access_console"):
        return qs.filter(owner=user)
    return qs.none()


def workload_list(*, user, filters=None) -> QuerySet[Workload]:
    """Visible workloads, filtered by WorkloadFilter (invalid filter values match nothing)."""
    from workloads.filters import WorkloadFilter

    qs = workloads_visible_to(user).select_related("tier", "owner")
    if not filters:
        return qs
    filterset = WorkloadFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def workload_get(*, user, slug: str) -> Workload:
    """404 for a workload the user may not see: its existence is not disclosed."""
    workload = (
        workloads_visible_to(user)
        .select_related("tier", "owner", "classified_by", "session_policy")
        .filter(slug=slug)
        .first()
    )
    if workload is None:
        raise Http404("No such workload.")
    return workload


def workload_counts(*, user) -> dict:
    qs = workloads_visible_to(user)
    by_status = dict(qs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    by_tier = list(
        qs.values("tier__name", "tier__rank").annotate(n=Count("id")).order_by("tier__rank")
    )
    return {"by_status": by_status, "by_tier": by_tier}


def entitlements_of(*, workload: Workload) -> QuerySet[Entitlement]:
    return workload.entitlements.select_related("tool", "granted_by", "revoked_by")


EXTENDED_LIMITS = ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")


def extension_limits(extension) -> dict[str, int]:
    """What an extension grants: its limits that are set."""
    return {
        name: getattr(extension, name)
        for name in EXTENDED_LIMITS
        if getattr(extension, name) is not None
    }


def extended(limits: dict, granted: dict[str, int]) -> dict:
    """`limits` raised to what an extension grants."""
    result = dict(limits)
    for name, value in granted.items():
        if result.get(name) is None or value > result[name]:
            result[name] = value
    return result


def window_ceilings(tier: SensitivityTier) -> dict[str, int]:
    """The most a session window may raise each limit to on this tier: a fixed multiple of
    the tier's default (SESSION_WINDOW_MAX_FACTOR), so no approval can make a limit moot."""
    factor = settings.SESSION_WINDOW_MAX_FACTOR
    return {name: getattr(tier, name) * factor for name in EXTENDED_LIMITS}


def effective_session_limits(*, workload: Workload, at, caps: dict | None = None) -> dict:
    """The session policy in force: overrides or tier defaults, raised by valid extensions,
    then held under the caps of any narrowing containment (`caps`: the workload's, when the
    caller read them for many workloads at once)."""
    from governance.findings.narrowing import capped, caps_in_force

    limits = workload.session_policy.effective(workload.tier)
    for extension in workload.extensions.filter(status="active"):
        if extension.is_valid_at(at):
            limits = extended(limits, extension_limits(extension))
    if caps is None:
        caps = caps_in_force([workload.pk]).get(workload.pk, {})
    return capped(limits, caps)


# --- catalogue reference data: the same for everyone allowed to read the catalogue -----------


def tier_list() -> QuerySet[SensitivityTier]:
    return SensitivityTier.objects.order_by("rank")


def tool_list() -> QuerySet[Tool]:
    """Tools with how many active grants each has (one query).

    A correlated COUNT(*), so only the listed tools are counted, from the (tool, status)
    index alone: a JOIN with GROUP BY read every grant first, and COUNT(id) would read every
    counted grant's row (each 40 ms at 50,000 grants, against 4 ms).
    """
    active = (
        Entitlement.objects.filter(tool=OuterRef("pk"), status=Entitlement.Status.ACTIVE)
        .order_by()
        .values("tool")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Tool.objects.annotate(active_grants=Coalesce(Subquery(active), 0)).order_by("slug")


def combination_rule_list() -> QuerySet[CombinationRule]:
    return CombinationRule.objects.order_by("slug")


# --- grants -------------------------------------------------------------------------------


def grant_status_at(grant: Entitlement, at) -> str:
    """The status a reader should see: an active grant past its end reads as expired even
    before the expiry job has flipped it."""
    if grant.status == Entitlement.Status.ACTIVE and grant.valid_until and grant.valid_until <= at:
        return Entitlement.Status.EXPIRED
    return grant.status


def grants_with_status(qs: QuerySet[Entitlement], status: str, at) -> QuerySet[Entitlement]:
    """Filter by the status `grant_status_at` reports (uses the (status, valid_until) index)."""
    active = Q(status=Entitlement.Status.ACTIVE)
    ended = Q(valid_until__isnull=False, valid_until__lte=at)
    if status == Entitlement.Status.ACTIVE:
        return qs.filter(active & ~ended)
    if status == Entitlement.Status.EXPIRED:
        return qs.filter(Q(status=Entitlement.Status.EXPIRED) | (active & ended))
    return qs.filter(status=status)


def grant_list(*, user) -> QuerySet[Entitlement]:
    """Grants of the workloads `user` may see."""
    return (
        Entitlement.objects.filter(workload__in=workloads_visible_to(user))
        .select_related("workload", "tool", "granted_by")
        .order_by("-created_at", "-id")
    )


def grants_valid_at(*, workload: Workload, at) -> QuerySet[Entitlement]:
    """The grants a workload may use at `at` (what `Entitlement.is_valid_at` says, in SQL)."""
    return (
        grants_valid_at_any(at)
        .filter(workload=workload)
        .select_related("tool")
        .order_by("tool__slug")
    )


def workload_audit_trail(*, workload: Workload):
    """Audit events about a workload: itself, its session policy, its grants, rule exceptions
    and session windows, newest first.

    One query, a UNION ALL of one branch per object type: each branch is served by the
    (object_type, object_id) index. The same conditions OR-ed in one WHERE could not use it
    (PostgreSQL walked the whole audit log backwards: 12 ms at 50,000 events, growing with
    the log).
    """

    def ids(related):
        # AuditEvent.object_id is text: compare with the ids as text, in one query.
        return related.annotate(text_id=Cast("pk", CharField())).values("text_id")

    about = AuditEvent.objects.order_by()
    branches = [
        about.filter(
            object_type__in=("workloads.workload", "workloads.sessionpolicy"),
            object_id=workload.pk,
        ),
        about.filter(object_type="workloads.entitlement", object_id__in=ids(workload.entitlements)),
        about.filter(object_type="workloads.ruleexception", object_id__in=ids(workload.exceptions)),
        about.filter(
            object_type="workloads.sessionextension", object_id__in=ids(workload.extensions)
        ),
    ]
    return branches[0].union(*branches[1:], all=True).order_by("-id")


def workloads_holding_combination(*, rule: CombinationRule, at) -> list[str]:
    """Slugs of the workloads (not retired) whose grants valid at `at` already trip `rule`,
    without a valid exception to it: what a new or tightened rule leaves standing, since it
    only blocks grants made after it. Reads only the grants of the rule's tools."""
    from workloads.combinations import rule_tripped
    from workloads.models import RuleException
    from workloads.services import rule_spec

    spec = rule_spec(rule)
    labels = set().union(*spec.groups)
    slugs = {label.removeprefix("tool:") for label in labels if label.startswith("tool:")}
    grants = (
        grants_valid_at_any(at)
        .filter(Q(tool__capability_class__in=labels) | Q(tool__slug__in=slugs))
        .exclude(workload__status=Workload.Status.RETIRED)
        .values_list("workload__slug", "tool__slug", "tool__capability_class")
    )
    held: dict[str, dict[str, str]] = {}
    for workload, tool, capability in grants:
        held.setdefault(workload, {})[tool] = capability
    excepted = {
        e.workload.slug
        for e in RuleException.objects.filter(rule=rule, workload__slug__in=held).select_related(
            "workload"
        )
        if e.is_valid_at(at)
    }
    return sorted(w for w, tools in held.items() if w not in excepted and rule_tripped(spec, tools))


def grants_unused(*, user, at, days: int) -> QuerySet[Entitlement]:
    """Grants valid now, held for at least `days`, whose tool the workload has not called in
    that time (never used first, then least recently): the "unused grant → revoke"
    recommendation. Walks the grant_unused index; evaluation keeps last_used_at."""
    cutoff = at - timedelta(days=days)
    return (
        grants_valid_at_any(at)
        .filter(workload__in=workloads_visible_to(user), valid_from__lte=cutoff)
        .exclude(workload__status=Workload.Status.RETIRED)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))
        .select_related("workload", "tool")
        .order_by(F("last_used_at").asc(nulls_first=True), "id")
    )


def grants_valid_at_any(at) -> QuerySet[Entitlement]:
    """Every grant valid at `at` (active, started, not ended)."""
    return Entitlement.objects.filter(status=Entitlement.Status.ACTIVE, valid_from__lte=at).filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=at)
    )
