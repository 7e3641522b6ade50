"""Reads of the catalogue, scoped to what the asking user (or token) may see."""

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from governance.models import AuditEvent
from governance.tokens import ServicePrincipal
from workloads.models import CombinationRule, Entitlement, Tool, Workload


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


def effective_session_limits(*, workload: Workload, at) -> dict:
    """The session policy in force: overrides or tier defaults, raised by valid extensions."""
    limits = workload.session_policy.effective(workload.tier)
    for extension in workload.extensions.filter(status="active"):
        if not extension.is_valid_at(at):
            continue
        for name in ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens"):
            granted = getattr(extension, name)
            if granted is not None and (limits[name] is None or granted > limits[name]):
                limits[name] = granted
    return limits


def workload_audit_trail(*, workload: Workload):
    """Audit events about a workload: itself, its session policy and its grants, newest first."""
    grant_ids = [str(pk) for pk in workload.entitlements.values_list("pk", flat=True)]
    return AuditEvent.objects.filter(
        Q(object_type__in=("workloads.workload", "workloads.sessionpolicy"), object_id=workload.pk)
        | Q(object_type="workloads.entitlement", object_id__in=grant_ids)
    ).order_by("-id")


def tool_list():
    """Tools with how many active grants each has (one query)."""
    return Tool.objects.annotate(
        active_grants=Count("entitlements", filter=Q(entitlements__status="active"))
    ).order_by("slug")


def combination_rule_list():
    return CombinationRule.objects.order_by("slug")
