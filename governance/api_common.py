"""What every REST endpoint shares: one error shape, pagination, scope permissions.

Error body, everywhere:
    {"error": {"code": "...", "message": "...", "fields": {"name": ["..."]}, ...}}
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import (
    MiddlewareNotUsed,
    PermissionDenied,
    RequestDataTooBig,
    ValidationError,
)
from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from redis.exceptions import RedisError
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import DomainError
from governance.models import ServiceToken
from governance.numbers import whole_number
from governance.throttling import AtomicRateThrottle

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
    503: "unavailable",
}


def error_body(code: str, message: str, *, fields: dict | None = None, **extra) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra)
    return {"error": error}


def error_response(status_code: int, code: str, message: str, **kwargs) -> JsonResponse:
    """The same error shape for plain Django views (the hot paths)."""
    return JsonResponse(error_body(code, message, **kwargs), status=status_code)


def _flatten(detail) -> dict:
    if isinstance(detail, dict):
        return {
            key: [str(m) for m in (v if isinstance(v, list) else [v])] for key, v in detail.items()
        }
    return {
        "non_field_errors": [str(m) for m in (detail if isinstance(detail, list) else [detail])]
    }


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering a body nested deeper than Python's recursion limit with a
    400 like any other bad JSON (DRF's own lets the RecursionError through as a 500). The API
    takes JSON only: the default parsers' form and multipart bodies are not part of it."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the body nests too deeply.") from None


class RateUnknown(exceptions.APIException):
    """The rate limit cannot be checked (the shared cache is down): a write is refused, not
    let through unlimited and not answered with a bare 500."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The rate limit cannot be checked right now; try again shortly."
    default_code = "unavailable"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        fields = {exc.field: [exc.message]} if exc.field else None
        return Response(
            error_body(exc.code, exc.message, fields=fields, **exc.detail), status=exc.status
        )
    if isinstance(exc, ValidationError):
        exc = exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, RequestDataTooBig):  # DATA_UPLOAD_MAX_MEMORY_SIZE, read by request.data
        exc = PayloadTooLarge()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ParseError):
        code = "malformed"
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(
            code, "The request has invalid fields.", fields=_flatten(exc.detail)
        )
    else:
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
        response.data = error_body(code, message)
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait) + 1)
    if isinstance(exc, RateUnknown):
        response["Retry-After"] = "5"
    return response


class CursorlessPagination(PageNumberPagination):
    """Page numbers. A `page` or `page_size` that is not a positive whole number is a 400
    naming the parameter (DRF ignores such a page size, and answers a 404 for such a page,
    which reads as "no such list"); a page past the last is still a 404, and a page size over
    the maximum is the maximum."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        fields = {}
        for name in (self.page_query_param, self.page_size_query_param):
            raw = request.query_params.get(name)
            if name == self.page_query_param and raw in self.last_page_strings:
                continue
            if raw is not None and not _positive_whole_number(raw):
                fields[name] = ["Give a whole number of 1 or more."]
        if fields:
            raise exceptions.ValidationError(fields)
        return super().paginate_queryset(queryset, request, view)


def _positive_whole_number(raw: str) -> bool:
    return (whole_number(raw) or 0) >= 1


# A view's required_scope or required_permission, as ScopeOrPermission reads it: one for every
# method, one per method (a dict), or None: no caller of that kind is let in.
Requirement = str | dict[str, str] | None


class ScopeOrPermission(BasePermission):
    """Deny by default. A token needs the view's `required_scope`; a user its `required_permission`.

    Views set `required_scope` and `required_permission` (a dict keyed by HTTP method is
    accepted for both); a view that sets neither is refused.
    """

    message = "You do not have permission for this."

    @staticmethod
    def _for_method(value, method):
        if isinstance(value, dict):
            return value.get(method) or value.get("*")
        return value

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if request.method not in getattr(view, "allowed_methods", (request.method,)):
            return True  # let the view answer 405 rather than a misleading 403
        token = request.auth if isinstance(request.auth, ServiceToken) else None
        if token is not None:
            scope = self._for_method(getattr(view, "required_scope", None), request.method)
            return bool(scope) and scope in token.scopes
        permission = self._for_method(getattr(view, "required_permission", None), request.method)
        return bool(permission) and request.user.has_perm(permission)


# What a request field the API does not know gets, from DRF inputs and the plain views alike.
UNKNOWN_FIELD = "This field cannot be set here."


class StrictInput(serializers.Serializer):
    """Unknown or read-only fields are an error, not silently dropped: a misspelt optional
    field would otherwise be ignored and the request carried out without it. The schema says
    so too (`additionalProperties: false`, governance.openapi.StrictSchema)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [UNKNOWN_FIELD] for name in unknown})
        return super().to_internal_value(data)


class WriteThrottle(AtomicRateThrottle):
    """Rate-limits unsafe methods per token (or user, or address) at the `write` rate."""

    scope = "write"

    def get_rate(self):
        # Read at request time so settings overrides (tests, env) take effect.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except (OSError, RedisError) as error:  # the cache is unreachable
            raise RateUnknown() from error

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ServiceToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


# The paths services call: they get machine-readable errors, never an HTML page.
API_PREFIXES = ("/api/", "/v1/")
_GRPC_NOT_FOUND, _GRPC_INTERNAL = 5, 13


def _otlp_status(status: int, grpc_code: int, message: str, *, as_json: bool) -> HttpResponse:
    """An OTLP error answer: a google.rpc.Status, as JSON or protobuf."""
    from governance.ingest.otlp_wire import status_body

    body = status_body(grpc_code, message, as_json=as_json)
    content_type = "application/json" if as_json else "application/x-protobuf"
    return HttpResponse(body, status=status, content_type=content_type)


def not_found(request, exception=None):
    """handler404: the JSON error shape under /api/, an OTLP Status under /v1/ (as protobuf
    for a protobuf request, else JSON; an exporter pointed at `/v1/traces/` is a common
    mistake, so it is told where to send), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", "Not found.")
    if request.path.startswith("/v1/"):
        message = f"Nothing at {request.path}: OTLP traces go to /v1/traces (no trailing slash)."
        as_json = request.content_type != "application/x-protobuf"
        return _otlp_status(404, _GRPC_NOT_FOUND, message, as_json=as_json)
    return page_not_found(request, exception)


def server_failed(request):
    """handler500: a service calling the API gets the machine-readable error shape (and /v1/
    traces an OTLP Status), never an HTML page; people get the console's error page."""
    if request.path.startswith("/api/"):
        return error_response(500, "server_error", "Something went wrong on our side.")
    if request.path.startswith("/v1/"):
        as_json = request.content_type == "application/json"
        message = "Something went wrong on our side."
        return _otlp_status(500, _GRPC_INTERNAL, message, as_json=as_json)
    return server_error(request)


class ApiNotFoundMiddleware:
    """With DEBUG on, Django answers a 404 with its HTML technical page and never calls
    handler404; a service calling the API (under `manage.py run`) would get HTML. This turns
    such a page on an API path into not_found's machine-readable answer, and leaves the
    console's debug pages alone. Unused with DEBUG off, where handler404 answers already.
    Last in MIDDLEWARE, so the others still add their headers to what it answers."""

    def __init__(self, get_response):
        if not settings.DEBUG:
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith(API_PREFIXES)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return not_found(request)
        return response
