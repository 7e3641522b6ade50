"""OpenAPI pieces shared by every endpoint: the Bearer scheme and the error shape."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer mnd_…` (governance.tokens.ServiceTokenAuthentication)."""

    target_class = "governance.tokens.ServiceTokenAuthentication"
    name = "ServiceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "mnd_<43 url-safe characters>",
            "description": (
                "A service token from `manage.py create_service_token` or the console. "
                "Scopes: read, write, decide, ingest; a token may be bound to workloads."
            ),
        }


class StrictSchema(AutoSchema):
    """Marks the request bodies that refuse unknown fields as closed objects, so clients and
    generated tests know an extra field is a 400, not ignored."""

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        from governance.api_common import StrictInput

        if direction == "request" and isinstance(force_instance(serializer), StrictInput):
            schema["additionalProperties"] = False
        return schema


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. invalid, not_found, duplicate.")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field name → messages, for 400s.",
    )


class ErrorBody(serializers.Serializer):
    """The one error shape every endpoint answers with."""

    error = ErrorDetail()


def _error(description: str, code: str, message: str, **extra) -> OpenApiResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return OpenApiResponse(
        ErrorBody, description=description, examples=[OpenApiExample(code, value=body)]
    )


ERROR_400 = _error(
    "Invalid input, with the offending fields.",
    "invalid",
    "The request has invalid fields.",
    fields={"slug": ["This field is required."]},
)
ERROR_401 = _error(
    "No, invalid, expired or revoked credentials.",
    "not_authenticated",
    "Invalid, expired or revoked token.",
)
ERROR_403 = _error(
    "The token lacks the scope, or the user the permission.",
    "forbidden",
    "You do not have permission for this.",
)
ERROR_404 = _error("Unknown, or not visible to you.", "not_found", "Not found.")
ERROR_409 = _error(
    "Conflicts with existing state.",
    "duplicate",
    "A workload with slug 'triage-bot' exists.",
    fields={"slug": ["A workload with slug 'triage-bot' exists."]},
)
ERROR_429 = _error(
    "Too many requests; see Retry-After.",
    "throttled",
    "Request was throttled. Expected available in 12 seconds.",
)

ERROR_503_RATE = _error(
    "The rate limit cannot be checked (its cache is down); nothing was written. See Retry-After.",
    "unavailable",
    "The rate limit cannot be checked right now; try again shortly.",
)
# What every throttled write may answer besides its own errors.
WRITE_LIMITS = {429: ERROR_429, 503: ERROR_503_RATE}

READ_ERRORS = {401: ERROR_401, 403: ERROR_403}
DETAIL_ERRORS = {**READ_ERRORS, 404: ERROR_404}
