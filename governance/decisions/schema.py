"""OpenAPI for the decision endpoint, which is a plain Django view on the hot path.

`DecisionSchemaStub` is a documentation-only APIView: it is never routed. The preprocessing
hook `decision_endpoint_hook` (SPECTACULAR_SETTINGS["PREPROCESSING_HOOKS"]) adds it to the
endpoints drf-spectacular walks, at the real view's path.
"""

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.views import APIView

from governance.api_common import StrictInput
from governance.decisions.evaluator import REASONS

PATH = "/api/v1/decisions"


class CheckInput(StrictInput):
    workload = serializers.CharField(max_length=80, help_text="Workload slug")
    tool = serializers.CharField(max_length=80, help_text="Tool slug")
    session = serializers.CharField(
        max_length=200,
        required=False,
        allow_null=True,
        help_text="The agent run's id. With it the window, budget and dynamic combination "
        "rules are checked, and an allowed call counts toward the session.",
    )
    context = serializers.DictField(
        required=False,
        help_text="Free-form, at most DECISIONS_CONTEXT_MAX (default 4,096) bytes as JSON; "
        "logged with the answer, not judged. Larger → 400.",
    )
    id = serializers.CharField(
        max_length=64, required=False, help_text="Correlation id (batch): echoed back."
    )


class BatchInput(StrictInput):
    """The batch form: `checks` alone, nothing beside it."""

    checks = CheckInput(
        many=True,
        allow_empty=False,
        help_text="Up to DECISIONS_BATCH_MAX (default 100) checks; more → 413. A malformed "
        "check gets an error result of its own (CheckErrorOutput); the others are answered.",
    )


# One of the two forms, exactly: a single check, or `checks` alone (a body mixing them, or
# neither, is a 400). Each form refuses fields it does not know (additionalProperties).
DecisionInput = PolymorphicProxySerializer(
    component_name="Decision",  # "DecisionRequest" once split into request and response
    serializers=[CheckInput, BatchInput],
    resource_type_field_name=None,
)


class ReasonOutput(serializers.Serializer):
    code = serializers.ChoiceField(choices=sorted(REASONS))
    message = serializers.CharField()


class ObligationsOutput(serializers.Serializer):
    session_seconds_left = serializers.IntegerField(allow_null=True)
    tool_calls_left = serializers.IntegerField(allow_null=True)
    log_level = serializers.ChoiceField(choices=["metadata", "full_trace"])


class AnswerOutput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["allow", "deny"])
    reasons = ReasonOutput(many=True)
    policy_version = serializers.IntegerField()
    obligations = ObligationsOutput()
    id = serializers.CharField(required=False, help_text="Batch only: the correlation id.")


class CheckErrorDetail(serializers.Serializer):
    code = serializers.ChoiceField(choices=["invalid"])
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name (of the check) → messages; `non_field_errors` for a check that "
        "is not an object.",
    )


class CheckErrorOutput(serializers.Serializer):
    """A malformed check's place in a batch's results: no decision is made or logged."""

    id = serializers.CharField(
        allow_null=True,
        help_text="The check's correlation id, when it gave a usable one (else null).",
    )
    error = CheckErrorDetail()


class SingleAnswerOutput(AnswerOutput):
    """The answer to a single check."""

    id = None  # only batch answers carry a correlation id


# A batch result: an answer, or (for a malformed check) an error in its place.
BatchResult = PolymorphicProxySerializer(
    component_name="DecisionBatchResult",
    serializers=[AnswerOutput, CheckErrorOutput],
    resource_type_field_name=None,
    many=True,
)


class BatchAnswerOutput(serializers.Serializer):
    """The results of a batch, one per check, in the order of its checks."""

    policy_version = serializers.IntegerField()
    results = BatchResult


DecisionOutput = PolymorphicProxySerializer(
    component_name="DecisionResponse",
    serializers=[SingleAnswerOutput, BatchAnswerOutput],
    resource_type_field_name=None,
)


class ErrorOutput(serializers.Serializer):
    error = serializers.DictField(help_text='{"code", "message", "fields"?}')


_ALLOW = {
    "decision": "allow",
    "reasons": [{"code": "allowed", "message": REASONS["allowed"]}],
    "policy_version": 42,
    "obligations": {"session_seconds_left": 1712, "tool_calls_left": 97, "log_level": "full_trace"},
}
_DENY = {
    "decision": "deny",
    "reasons": [
        {
            "code": "combination_needs_exception",
            "message": REASONS["combination_needs_exception"] + " Rule: lethal-trifecta.",
        }
    ],
    "policy_version": 42,
    "obligations": {"session_seconds_left": 1650, "tool_calls_left": 96, "log_level": "full_trace"},
}
_REASON_TABLE = "\n".join(f"- `{code}`: {message}" for code, message in REASONS.items())


class DecisionSchemaStub(APIView):
    """Documentation only; the endpoint is `governance.decisions.view.decide_view`."""

    from governance.tokens import ServiceTokenAuthentication

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes: list[type] = []

    @extend_schema(
        operation_id="decide",
        tags=["decisions"],
        summary="May workload W call tool T in session S now?",
        description=(
            "Token scope `decide`. Answers from the compiled policy in memory; an allowed "
            "session call is recorded atomically in the shared session state. Fails closed: "
            "503 with Retry-After when the policy or the session state cannot be confirmed, "
            "never allow. Every answer is logged (asynchronously). A token not bound to the "
            "workload gets `deny` with `token_not_bound`.\n\n**Batch**: each check is judged "
            'on its own. A malformed check gets `{"id", "error"}` in its place in '
            "`results` (its correlation id if it gave a usable one, else null; the fields at "
            "fault in `error.fields`), with no decision and no log entry; the other checks get "
            "their answers. A malformed envelope (not an object, `checks` not a non-empty "
            "list, a field beside `checks`) is a 400, as is a malformed single check; more "
            "than DECISIONS_BATCH_MAX checks is a 413.\n\nReason codes:\n" + _REASON_TABLE
        ),
        request=DecisionInput,
        responses={
            200: DecisionOutput,
            400: OpenApiResponse(
                ErrorOutput,
                description="Invalid JSON, a malformed single check, or a malformed batch envelope",
            ),
            401: OpenApiResponse(ErrorOutput, description="Missing, unknown or revoked token"),
            403: OpenApiResponse(ErrorOutput, description="The token lacks the decide scope"),
            413: OpenApiResponse(ErrorOutput, description="Too many checks or body too large"),
            415: OpenApiResponse(
                ErrorOutput,
                description="A Content-Type that is not JSON (application/json or +json)",
            ),
            503: OpenApiResponse(ErrorOutput, description="Cannot confirm: fail closed"),
        },
        examples=[
            OpenApiExample(
                "Session check",
                request_only=True,
                value={
                    "workload": "support-triage",
                    "tool": "crm-api",
                    "session": "run-8f2c",
                    "context": {"step": 3},
                },
            ),
            OpenApiExample("Allow", response_only=True, value=_ALLOW),
            OpenApiExample("Deny", response_only=True, value=_DENY),
            OpenApiExample(
                "Batch",
                request_only=True,
                value={
                    "checks": [
                        {"id": "c1", "workload": "support-triage", "tool": "crm-api"},
                        {"id": "c2", "workload": "support-triage", "tool": "send-email"},
                    ]
                },
            ),
            OpenApiExample(
                "Batch answer",
                response_only=True,
                value={
                    "policy_version": 42,
                    "results": [
                        {**_ALLOW, "id": "c1"},
                        {
                            "decision": "deny",
                            "reasons": [
                                {"code": "tool_not_granted", "message": REASONS["tool_not_granted"]}
                            ],
                            "policy_version": 42,
                            "obligations": {
                                "session_seconds_left": None,
                                "tool_calls_left": None,
                                "log_level": "full_trace",
                            },
                            "id": "c2",
                        },
                    ],
                },
            ),
            OpenApiExample(
                "Batch answer with a malformed check",
                response_only=True,
                value={
                    "policy_version": 42,
                    "results": [
                        {**_ALLOW, "id": "c1"},
                        {
                            "id": "c2",
                            "error": {
                                "code": "invalid",
                                "message": "The check has invalid fields.",
                                "fields": {"context": ["Expected an object."]},
                            },
                        },
                    ],
                },
            ),
        ],
    )
    def post(self, request):  # pragma: no cover - never routed
        raise NotImplementedError


def decision_endpoint_hook(endpoints, **kwargs):
    """Add the plain decision view to the schema, documented by the stub."""
    return [*endpoints, (PATH, r"^api/v1/decisions$", "POST", DecisionSchemaStub.as_view())]
