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
    generated tests know an extra field is a 400, not ignored. Adds the errors every operation
    of a kind can answer, so no view has to remember them: a paginated list's 400 for a bad
    `page`/`page_size` and 404 for a page past the last (CursorlessPagination), and 415 for a
    body that is not JSON wherever a body is read (the API's only parser is JSON)."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        parameters = operation.get("parameters", ())
        if any(p.get("in") == "query" and p.get("name") == "page" for p in parameters):
            self._also_answers(responses, "400", PAGE_400)
            self._also_answers(responses, "404", PAGE_404)
        if "requestBody" in operation and "415" not in responses:  # the hot paths say their own
            responses["415"] = self._get_response_for_code(ERROR_415[0], "415")
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _also_answers(
        self, responses: dict, code: str, answer: tuple[OpenApiResponse, str]
    ) -> None:
        """Add the answer under `code`; where the view documents that code already, add the
        example and a sentence to the view's own."""
        response, addendum = answer
        mine = self._get_response_for_code(response, code)
        theirs = responses.get(code)
        if theirs is None:
            responses[code] = mine
            return
        description = theirs.get("description", "").rstrip()
        if addendum not in description:
            theirs["description"] = f"{description} {addendum}".strip()
        content = theirs.get("content", {}).get("application/json")
        if content is not None:
            content.setdefault("examples", {}).update(
                mine["content"]["application/json"]["examples"]
            )

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


def _named_error(
    name: str, description: str, code: str, message: str, **extra
) -> tuple[OpenApiResponse, str]:
    """An error answer with its own example name (merged into a view's answer for the same
    status, it must not replace that view's example), and the sentence said when merged."""
    body = {"error": {"code": code, "message": message, **extra}}
    answer = OpenApiResponse(
        ErrorBody, description=description, examples=[OpenApiExample(name, value=body)]
    )
    return answer, description


# What StrictSchema adds: (the answer, the sentence added to a view's own answer of that code)
PAGE_400 = (
    _named_error(
        "Invalid page",
        "`page` or `page_size` is not a whole number of 1 or more.",
        "invalid",
        "The request has invalid fields.",
        fields={"page": ["Give a whole number of 1 or more."]},
    )[0],
    "Also when `page` or `page_size` is not a whole number of 1 or more.",
)
PAGE_404 = (
    _named_error(
        "Past the last page", "`page` is past the last page.", "not_found", "Invalid page."
    )[0],
    "Also when `page` is past the last page (message `Invalid page.`).",
)
ERROR_415 = (
    _named_error(
        "Not JSON",
        "The body is not JSON: a `Content-Type` other than application/json.",
        "unsupported_media_type",
        'Unsupported media type "text/plain" in request.',
    )[0],
    "Also when the body is not JSON.",
)

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
