"""Service tokens: create (the secret is shown once, in the response to the POST that made
it, and never stored), list, revoke."""

from datetime import timedelta

from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from governance.console.forms import ServiceTokenCreateForm
from governance.console.selectors import service_token_list
from governance.errors import DomainError
from governance.forms import form_add_service_error
from governance.htmx import redirect_after_post, render_invalid, render_page
from governance.models import ServiceToken
from governance.permissions import requires
from governance.tokens import service_token_create, service_token_revoke

PAGE_SIZE = 25
TEMPLATE = "governance/tokens.html"


def _context(request, *, form=None, issued=None) -> dict:
    page = Paginator(service_token_list(), PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    return {
        "page": page,
        "form": form or ServiceTokenCreateForm(),
        "issued": issued,
        "now": now,
        "expiring_before": now + timedelta(days=settings.TOKEN_EXPIRY_WARNING_DAYS),
    }


@requires("governance.manage_tokens")
def token_list_view(request):
    return render_page(
        request, TEMPLATE, _context(request), partials={"token-table": "table", "tokens": "tokens"}
    )


@requires("governance.manage_tokens")
@require_http_methods(["GET", "POST"])
def token_create_view(request):
    if request.method == "GET":
        return render_page(request, TEMPLATE, _context(request), partial="create_form")
    form = ServiceTokenCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            issued = service_token_create(
                by=request.user,
                name=data["name"],
                scopes=data["scopes"],
                workloads=data["workloads"],
                all_workloads=data["all_workloads"],
                expires_at=data["expires_at"],
            )
        except DomainError as error:
            form_add_service_error(form, error)
        else:
            # Shown once: this response is the only place the secret ever appears.
            response = render_page(
                request, TEMPLATE, _context(request, issued=issued), partial="tokens", status=201
            )
            response["Cache-Control"] = "no-store"
            return response
    return render_invalid(
        request, TEMPLATE, _context(request, form=form), partial="create_form", target="#token-form"
    )


@requires("governance.manage_tokens")
@require_http_methods(["POST"])
def token_revoke_view(request, pk):
    token = get_object_or_404(ServiceToken, pk=pk)
    service_token_revoke(token=token, by=request.user)
    if request.htmx:
        return render_page(request, TEMPLATE, _context(request), partial="tokens")
    return redirect_after_post(request, reverse("tokens:list"))
