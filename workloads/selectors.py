"""Reads of the catalogue, scoped to what the asking user (or token) may see."""

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from governance.tokens import ServicePrincipal
from workloads.models import Entitlement, Workload


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


def workload_list(*, user, filters: dict | None = None) -> QuerySet[Workload]:
    filters = filters or {}
    qs = workloads_visible_to(user).select_related("tier", "owner")
    if tier := filters.get("tier"):
        qs = qs.filter(tier__slug=tier)
    if status := filters.get("status"):
        qs = qs.filter(status=status)
    if owner := filters.get("owner"):
        qs = qs.filter(owner__username=owner)
    if filters.get("unclassified"):
        qs = qs.filter(tier__isnull=True)
    if q := (filters.get("q") or "").strip():
        qs = qs.filter(Q(slug__icontains=q) | Q(name__icontains=q) | Q(purpose__icontains=q))
    return qs


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
