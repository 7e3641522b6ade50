"""Recommendations that tighten access: grants nobody uses, revoked from one list."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from governance.errors import DomainError
from governance.htmx import redirect_after_post, render_page
from governance.numbers import whole_number
from governance.permissions import requires
from workloads import services
from workloads.selectors import grants_unused

PAGE_SIZE = 50
WINDOWS = (30, 60, 90)  # days a grant may sit unused before it is listed


def _days(raw) -> int:
    days = whole_number(raw)
    return days if days in WINDOWS else settings.GRANT_UNUSED_DAYS


@requires("workloads.grant_entitlement")
@require_http_methods(["GET"])
def unused_grants_view(request):
    days = _days(request.GET.get("days"))
    grants = grants_unused(user=request.user, at=timezone.now(), days=days)
    page = Paginator(grants, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "days": days,
        "windows": WINDOWS,
        "query": urlencode({"days": days}),
        "next_query": urlencode({"days": days, "page": page.number}),
    }
    return render_page(request, "workloads/unused_grants.html", context, partial="table")


@requires("workloads.grant_entitlement")
@require_http_methods(["POST"])
def unused_grant_revoke_view(request, pk):
    days = _days(request.POST.get("days"))
    grant = get_object_or_404(grants_unused(user=request.user, at=timezone.now(), days=days), pk=pk)
    reason = request.POST.get("reason", "").strip() or f"Unused for {days} days"
    back = (
        reverse("workloads:unused_grants")
        + "?"
        + urlencode({"days": days, "page": request.POST.get("page", "1")})
    )
    try:
        services.entitlement_revoke(grant=grant, reason=reason, by=request.user)
    except DomainError as error:
        messages.error(request, f"{grant.workload.slug}:{grant.tool.slug} — {error.message}")
    else:
        messages.success(request, f"Revoked {grant.tool.slug} from {grant.workload.slug}.")
    return redirect_after_post(request, back)
