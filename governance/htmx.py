"""One URL serves the page or, for a non-boosted htmx request, a fragment of it."""

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget


def is_fragment_request(request) -> bool:
    """An htmx request for part of a page. Not a boosted navigation, nor htmx restoring a page
    its history cache lost (it asks with HX-Request too, and must get the whole page)."""
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_page(
    request,
    template: str,
    context: dict,
    *,
    partial: str | None = None,
    partials: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The whole page, or `template#partial` when htmx asks for a fragment.

    `partials` maps the element id htmx targets (HX-Target) to the partial that renders it,
    for pages with several live regions; `partial` is used for any target.
    """
    if is_fragment_request(request):
        chosen = (partials or {}).get(request.htmx.target or "", partial)
        if chosen:
            template = f"{template}#{chosen}"
    return render(request, template, context, status=status)


def render_invalid(
    request, template: str, context: dict, *, partial: str, target: str
) -> HttpResponse:
    """Field errors in place: the form fragment, retargeted onto the form's own element
    (`target` is a CSS selector), with status 422; a plain form post gets the page at 422."""
    if is_fragment_request(request):
        response = render(request, f"{template}#{partial}", context, status=422)
        return reswap(retarget(response, target), "outerHTML")
    return render(request, template, context, status=422)


def redirect_after_post(request, url: str) -> HttpResponse:
    """After a successful write that moves on: htmx navigates (HX-Redirect), a plain post
    follows a 303."""
    if is_fragment_request(request):
        return HttpResponseClientRedirect(url)
    response = redirect(url)
    response.status_code = 303
    return response


def vary_on_htmx(get_response):
    """Middleware: a page and its htmx fragment share one URL, so every response says it
    varies with HX-Request. Without it the browser's Back button could show a fragment
    cached for the URL as the whole page (no navigation, no styles)."""

    def middleware(request):
        response = get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response

    return middleware
