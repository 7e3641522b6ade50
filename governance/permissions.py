"""Every console view states the permission it needs; anything unstated is denied.

Anonymous users are sent to log in; a signed-in user without the permission gets 403 (the
console's 403 page, or for htmx a banner from static/js/mandate.js).
The permission-matrix test reads `required_permission` off every routed view.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect


class ViewMarks(Protocol):
    """What a function view states about itself, as plain attributes on the function; the
    permission-matrix test reads them. Typed here because the checker knows no such
    attributes on a function."""

    required_permission: str | None
    required_scope: str | None
    is_public: bool


def view_marks(view: Callable[..., Any]) -> ViewMarks:
    """`view` itself, typed so the checker accepts setting its marks."""
    return cast(ViewMarks, view)


def requires(permission: str):
    """Decorate a function view with the one permission it needs."""

    def decorate(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return _to_login(request)
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        view_marks(guarded).required_permission = permission
        return guarded

    return decorate


def _to_login(request):
    """To the login page, then back. An htmx request (the session expired while the page was
    open) sends the browser there, and back to the page it was on, not the fragment's URL: a
    redirect it followed itself would swap the login form into the fragment. A plain form's
    POST goes back to the page the form was on: its own URL answers only POST, and logging
    in then landed on a 405."""
    if getattr(request, "htmx", False):
        back = request.htmx.current_url_abs_path or request.get_full_path()
        return HttpResponseClientRedirect(redirect_to_login(back).url)
    if request.method in ("GET", "HEAD"):
        return redirect_to_login(request.get_full_path())
    return redirect_to_login(_page_posted_from(request))


def _page_posted_from(request) -> str:
    """The same-site page a form was posted from (its Referer), else the dashboard."""
    referer = request.META.get("HTTP_REFERER", "")
    if url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        parts = urlsplit(referer)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return reverse("dashboard")


def public(view):
    """Mark a view as open to anyone (login, schema). Used sparingly and on purpose."""
    marks = view_marks(view)
    marks.required_permission = None
    marks.is_public = True
    return view
