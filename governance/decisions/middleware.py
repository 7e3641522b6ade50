"""Serve the decision endpoint ahead of the middleware stack.

First in MIDDLEWARE: for the decision path it calls the view itself and returns, so session,
CSRF, auth, message, CSP and htmx middleware do no work for it (the endpoint authenticates
by bearer token and renders no HTML). It still sets the two headers that matter for a JSON
API answer. DECISIONS_FAST_PATH=0 sends the endpoint through the full stack instead (the
view is csrf_exempt and routed in api_urls.py either way) — bench/README.md compares both.
"""

from django.conf import settings

from governance.decisions.view import decide_view
from governance.request_id import request_id_for


class DecisionFastPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.routes = {}
        if getattr(settings, "DECISIONS_FAST_PATH", True):
            self.routes["/api/v1/decisions"] = decide_view
        if getattr(settings, "DECISIONS_BENCH_FLOORS", False):
            from governance.decisions.bench_views import FLOOR_ROUTES

            self.routes.update(FLOOR_ROUTES)

    def __call__(self, request):
        view = self.routes.get(request.path_info)
        if view is None:
            return self.get_response(request)
        request.request_id = request_id_for(request.META)
        response = view(request)
        response["X-Content-Type-Options"] = "nosniff"
        response["X-Request-ID"] = request.request_id
        return response
