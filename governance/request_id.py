"""A request id on every request, echoed in responses and stamped on audit events."""

import contextvars
import random

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default=""
)


def request_id_for(meta: dict) -> str:
    """The caller's X-Request-ID when it is printable (cut to 64 characters, the log's
    column), else a new one: 128 random bits in hex, as long as a uuid4's. They only need to
    be unique, not unguessable, so they come from `random` (reseeded in each forked worker)
    rather than `uuid4`, which makes a getrandom system call on every request."""
    incoming = meta.get("HTTP_X_REQUEST_ID", "")
    if incoming and incoming.isprintable():
        return incoming[:64]
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id = request_id_for(request.META)
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response
