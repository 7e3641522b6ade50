"""Every console view states the permission it needs; anything unstated is denied.

Anonymous users are sent to log in; a signed-in user without the permission gets 403.
The permission-matrix test reads `required_permission` off every routed view.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied


def requires(permission: str):
    """Decorate a function view with the one permission it needs."""

    def decorate(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        guarded.required_permission = permission
        return guarded

    return decorate


def public(view):
    """Mark a view as open to anyone (login, schema). Used sparingly and on purpose."""
    view.required_permission = None
    view.is_public = True
    return view
