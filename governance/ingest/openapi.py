"""OpenAPI documentation of the plain ingestion views.

drf-spectacular only documents DRF views, so each plain view carries `cls`, pointing at a
documentation-only APIView below: the schema generator instantiates that class to read the
`extend_schema` annotations, while Django keeps serving the plain function.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from governance.api_common import ScopeOrPermission, StrictInput
from governance.ingest.native import MAX_EVENTS
from governance.ingest.otlp_wire import MAX_SPANS
from governance.ingest.records import MAX_INT, REJECTION_CODES
from governance.ingest.views import MAX_BYTES

EVENT_TYPES = [
    "session_start",
    "reasoning_step",
    "tool_call",
    "tool_result",
    "final_action",
    "session_end",
]


class NativeEventDoc(StrictInput):
    event_id = serializers.CharField(
        max_length=200, help_text="Client id; the idempotency key (unique per workload)."
    )
    type = serializers.ChoiceField(choices=EVENT_TYPES)
    session_id = serializers.CharField(max_length=200, help_text="The client's session id.")
    workload = serializers.SlugField(
        max_length=80, help_text="Workload slug; the token must be bound to it."
    )
    occurred_at = serializers.DateTimeField(
        help_text="RFC 3339 with a timezone; after 2000-01-01, at most 1 hour in the future."
    )
    # "" is accepted where a field is optional text (the decoder's default), so no minLength.
    tool = serializers.CharField(
        max_length=80,
        required=False,
        allow_blank=True,
        help_text="Tool slug; required (non-empty) for tool_call/tool_result.",
    )
    tool_call_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    arguments = serializers.JSONField(
        required=False,
        help_text="Tool arguments (any JSON, or a JSON string); only their SHA-256 over "
        "canonical JSON (sorted keys, compact) is stored.",
    )
    content = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="session_start: the original request; reasoning_step: the reasoning text; "
        "final_action: the action taken, described; tool_result: the result.",
    )
    # Stored in PositiveIntegerFields: a larger count is rejected (invalid_field).
    input_tokens = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False)
    output_tokens = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False)
    reasoning_tokens = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False)
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=MAX_INT, required=False, allow_null=True
    )
    attributes = serializers.DictField(
        required=False,
        help_text="Free attributes (an object): your own fields go here; any other field "
        "beside the ones above rejects the event (unknown_field).",
    )


class NativeBatchDoc(StrictInput):
    events = NativeEventDoc(many=True, help_text=f"At most {MAX_EVENTS} events.")


class RejectionDoc(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the item in `events`.")
    event_id = serializers.CharField(help_text="The item's event_id, when readable.")
    code = serializers.ChoiceField(choices=REJECTION_CODES)
    field = serializers.CharField(required=False)
    message = serializers.CharField()


class DuplicateDoc(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the item in `events`.")
    event_id = serializers.CharField()


class BatchResultDoc(serializers.Serializer):
    accepted = serializers.IntegerField(
        help_text="Items stored now or before: those listed in `duplicates` count as accepted."
    )
    rejected = RejectionDoc(many=True, help_text="Every item not listed here was accepted.")
    duplicates = DuplicateDoc(
        many=True,
        help_text="Accepted items whose event was stored before (a retry), so not stored again.",
    )


class ErrorDetailDoc(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorDoc(serializers.Serializer):
    error = ErrorDetailDoc()


class RpcStatusDoc(serializers.Serializer):
    code = serializers.IntegerField(help_text="gRPC status code (3 invalid, 8 exhausted …).")
    message = serializers.CharField()


class PartialSuccessDoc(serializers.Serializer):
    rejectedSpans = serializers.CharField(help_text="int64 as a decimal string.")
    errorMessage = serializers.CharField()


class ExportResponseDoc(serializers.Serializer):
    partialSuccess = PartialSuccessDoc(required=False)


def _error(description: str, code: str, message: str) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorDoc,
        description=description,
        examples=[OpenApiExample(code, value={"error": {"code": code, "message": message}})],
    )


_BATCH_EXAMPLE = {
    "events": [
        {
            "event_id": "run-42-0",
            "type": "session_start",
            "session_id": "run-42",
            "workload": "support-triage",
            "occurred_at": "2025-03-01T12:00:00Z",
            "content": "Summarise ticket #1234 and draft a reply.",
        },
        {
            "event_id": "run-42-1",
            "type": "reasoning_step",
            "session_id": "run-42",
            "workload": "support-triage",
            "occurred_at": "2025-03-01T12:00:04Z",
            "content": "The customer asks about a refund; read the ticket first.",
            "input_tokens": 812,
            "output_tokens": 1490,
            "reasoning_tokens": 1210,
            "duration_ms": 3900,
        },
        {
            "event_id": "run-42-2",
            "type": "tool_call",
            "session_id": "run-42",
            "workload": "support-triage",
            "occurred_at": "2025-03-01T12:00:05Z",
            "tool": "crm-api",
            "tool_call_id": "call_1",
            "arguments": {"ticket": 1234},
            "duration_ms": 120,
        },
        {
            "event_id": "run-42-3",
            "type": "final_action",
            "session_id": "run-42",
            "workload": "support-triage",
            "occurred_at": "2025-03-01T12:00:09Z",
            "content": "Drafted a reply offering a refund; not sent.",
        },
        {
            "event_id": "run-42-4",
            "type": "session_end",
            "session_id": "run-42",
            "workload": "support-triage",
            "occurred_at": "2025-03-01T12:00:10Z",
        },
    ]
}

_LIMITS = (
    f"Limits: at most {MAX_EVENTS} events and {MAX_BYTES // (1024 * 1024)} MiB "
    "(also after `Content-Encoding: gzip`) per request; the rate per token is the `ingest` "
    "throttle rate (env INGEST_RATE, default 600/min)."
)


class _IngestDoc(APIView):
    """What both served views require: a service token with the ingest scope."""

    permission_classes = [ScopeOrPermission]
    required_scope = "ingest"
    required_permission = None


class EventsIngestDoc(_IngestDoc):
    """Documentation only: served by `governance.ingest.views.events_ingest`."""

    @extend_schema(
        operation_id="events_ingest",
        tags=["ingest"],
        summary="Report a batch of usage events",
        description=(
            "Service token with the `ingest` scope. Events are stored before anything else "
            "happens; evaluation runs afterwards, in the background.\n\n"
            "**Idempotent**: `event_id` is unique per workload. An event already stored is "
            "not stored again: when the item is the same event (the same `session_id`, "
            "`type`, `occurred_at` instant and `tool`) it is a retry, counts as accepted and "
            "is listed in `duplicates` (the copy stored first is kept, whatever the retry's "
            "content, counts, arguments or attributes); when any of those differ it is another "
            "event reusing the id, rejected as `event_id_reused`. An id used twice in one "
            "batch is `duplicate_event_id` for the later item.\n\n**Partial success**: each "
            "item is validated on its own; valid "
            "items are kept, invalid ones are listed in `rejected` with a machine-readable "
            f"`code` ({', '.join(REJECTION_CODES)}). A token bound to some workloads gets "
            "`workload_not_bound` for any other slug, whether or not it exists; only a token "
            "for every workload is told `unknown_workload`. Text must be Unicode that "
            "PostgreSQL can store: an event holding a NUL (U+0000) or an unpaired UTF-16 "
            'surrogate escape (`"\\ud83d"`, a string cut inside an emoji) is rejected as '
            "`invalid_field`, the others kept. A body that is not a batch at all is a "
            f"400.\n\n{_LIMITS}\n\nSessions are created from the events: the original request "
            "from session_start's `content`, the final action from final_action's."
        ),
        request=NativeBatchDoc,
        responses={
            200: OpenApiResponse(
                BatchResultDoc,
                description="Per-item result (also when some or all items were rejected).",
                examples=[
                    OpenApiExample(
                        "All accepted", value={"accepted": 5, "rejected": [], "duplicates": []}
                    ),
                    OpenApiExample(
                        "Partly rejected",
                        value={
                            "accepted": 4,
                            "rejected": [
                                {
                                    "index": 2,
                                    "event_id": "run-42-2",
                                    "code": "workload_not_bound",
                                    "field": "workload",
                                    "message": "This token may not report for workload 'x'.",
                                }
                            ],
                            "duplicates": [],
                        },
                    ),
                    OpenApiExample(
                        "A retry, one id reused",
                        value={
                            "accepted": 4,
                            "rejected": [
                                {
                                    "index": 4,
                                    "event_id": "run-42-4",
                                    "code": "event_id_reused",
                                    "field": "event_id",
                                    "message": "The event id is already stored for a different "
                                    "event (its session differs): a new event needs a new id, "
                                    "and a retry repeats the event as first sent.",
                                }
                            ],
                            "duplicates": [
                                {"index": n, "event_id": f"run-42-{n}"} for n in range(4)
                            ],
                        },
                    ),
                ],
            ),
            400: _error("Not a batch (not JSON, or no `events` list).", "invalid", "…"),
            401: _error("No valid bearer token.", "not_authenticated", "…"),
            403: _error("The token lacks the `ingest` scope.", "forbidden", "…"),
            413: _error("Too many events or too many bytes.", "too_large", "…"),
            415: _error("Not JSON.", "unsupported_media_type", "…"),
            429: _error("Over the rate; see Retry-After.", "throttled", "…"),
            503: _error("Database unavailable; see Retry-After.", "unavailable", "…"),
        },
        examples=[OpenApiExample("A short run", value=_BATCH_EXAMPLE, request_only=True)],
    )
    def post(self, request):  # pragma: no cover - never routed
        raise NotImplementedError


_OTLP_JSON_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "support-triage"}}]
            },
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "execute_tool ticket-read",
                            "kind": 1,
                            "startTimeUnixNano": "1740830405000000000",
                            "endTimeUnixNano": "1740830405120000000",
                            "attributes": [
                                {
                                    "key": "gen_ai.operation.name",
                                    "value": {"stringValue": "execute_tool"},
                                },
                                {
                                    "key": "gen_ai.tool.name",
                                    "value": {"stringValue": "crm-api"},
                                },
                                {
                                    "key": "gen_ai.conversation.id",
                                    "value": {"stringValue": "run-42"},
                                },
                                {
                                    "key": "gen_ai.tool.call.arguments",
                                    "value": {"stringValue": '{"ticket": 1234}'},
                                },
                            ],
                        }
                    ]
                }
            ],
        }
    ]
}


def _in_both_encodings(responses: dict[int, OpenApiResponse]) -> dict:
    """Each answer as JSON (documented field by field) and as protobuf: OTLP answers in the
    request's content type, so a protobuf export gets ExportTraceServiceResponse or a
    google.rpc.Status as protobuf bytes."""
    both: dict = {}
    for code, response in responses.items():
        both[(code, "application/json")] = response
        both[(code, "application/x-protobuf")] = OpenApiResponse(
            OpenApiTypes.BINARY, description=response.description
        )
    return both


class OtlpTracesDoc(_IngestDoc):
    """Documentation only: served by `governance.ingest.views.otlp_traces`."""

    @extend_schema(
        operation_id="otlp_traces_export",
        tags=["ingest"],
        summary="Export OpenTelemetry traces (OTLP/HTTP)",
        description=(
            "OTLP/HTTP trace export (`ExportTraceServiceRequest`), as `application/x-protobuf` "
            "(what the OpenTelemetry SDK exporters send) or `application/json` (ids as hex "
            "strings); `Content-Encoding: gzip` accepted. The answer is in the request's "
            "content type. Point an exporter here with "
            "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://<host>/v1/traces` and "
            "`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>` (scope `ingest`).\n\n"
            "gen_ai spans become usage events: `execute_tool` → tool_call (+ tool_result when "
            "the span carries a result), `chat`/`generate_content`/`text_completion` → "
            "reasoning_step with token counts, `invoke_agent` → session_start (original "
            "request from the input messages), final_action (from the output) and "
            "session_end. OpenInference span kinds (TOOL, LLM, AGENT) are read too; other "
            "spans are ignored. The session is `gen_ai.conversation.id`, `session.id` or "
            "`langfuse.session.id`, else the trace. The workload is `mandate.workload`, "
            "`gen_ai.agent.id`, `gen_ai.agent.name` or the resource's `service.name`, and "
            "must be one the token is bound to; a token bound to one workload needs none. "
            "A bound token's names are looked up among its own workloads only: a "
            "`mandate.workload` it may not report for is `workload_not_bound`, whether or not "
            "that workload exists, and an agent or service name that is none of its "
            "workloads falls back to its only workload. A span's `mandate.workload` decides "
            "alone: no other name, nor its trace's workload, is used in its place. "
            "(trace id, span id) is the idempotency key: a span sent again is accepted and "
            "stored once, with no `partialSuccess`; a span under the ids of a stored span "
            "that is a different span (another start, kind of event, tool or session) is "
            "rejected as `event_id_reused`, as is a second, different span under the same ids "
            "in one export.\n\n"
            f"Limits: {MAX_BYTES // (1024 * 1024)} MiB and {MAX_SPANS} spans a request. Spans "
            "that cannot be stored are counted in `partialSuccess.rejectedSpans` (not retried "
            "by clients), among them a span holding a NUL (U+0000) or, in JSON, an unpaired "
            'UTF-16 surrogate escape (`"\\ud83d"`). Errors carry a `google.rpc.Status`.'
        ),
        request={
            "application/x-protobuf": OpenApiTypes.BINARY,
            "application/json": OpenApiTypes.OBJECT,
        },
        responses=_in_both_encodings(
            {
                200: OpenApiResponse(
                    ExportResponseDoc,
                    description="Stored. Empty on full success; `partialSuccess` when some spans "
                    "were rejected.",
                    examples=[
                        OpenApiExample("Full success", value={}),
                        OpenApiExample(
                            "Partial success",
                            value={
                                "partialSuccess": {
                                    "rejectedSpans": "1",
                                    "errorMessage": "span 3 (…): workload_not_bound: …",
                                }
                            },
                        ),
                    ],
                ),
                400: OpenApiResponse(RpcStatusDoc, description="Unreadable body (not retried)."),
                401: OpenApiResponse(RpcStatusDoc, description="No valid bearer token."),
                403: OpenApiResponse(RpcStatusDoc, description="The token lacks `ingest`."),
                413: OpenApiResponse(RpcStatusDoc, description="Too large."),
                415: OpenApiResponse(RpcStatusDoc, description="Not protobuf or JSON."),
                429: OpenApiResponse(RpcStatusDoc, description="Over the rate; see Retry-After."),
                503: OpenApiResponse(
                    RpcStatusDoc, description="Overloaded (database unavailable); see Retry-After."
                ),
            }
        ),
        examples=[OpenApiExample("One tool span", value=_OTLP_JSON_EXAMPLE, request_only=True)],
    )
    def post(self, request):  # pragma: no cover - never routed
        raise NotImplementedError


def documented_by(doc_view: type[APIView]):
    """Attach a documentation-only APIView to a plain view so the schema includes it."""

    def attach(view):
        view.cls = doc_view
        view.initkwargs = {}
        view.required_scope = doc_view.required_scope
        view.required_permission = doc_view.required_permission
        return view

    return attach
