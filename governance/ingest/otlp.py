"""OTLP/HTTP traces → usage events: decoding (protobuf or JSON) and the gen_ai mapping.

Decoding produces plain `OtlpSpan`s; `spans_to_records` maps them, span by span:

- execute_tool (OpenInference TOOL) → tool_call at the start, plus tool_result at the end
  when the span carries a result (`gen_ai.tool.call.result` / `output.value`).
- chat, generate_content, text_completion (OpenInference LLM) → reasoning_step with tokens
  (reasoning tokens from `gen_ai.usage.reasoning.output_tokens` or OpenInference's
  `llm.token_count.completion_details.reasoning`) and the reasoning text when captured.
- invoke_agent (OpenInference AGENT) → session_start (original request: the first user
  message), final_action when there is output, session_end at the end.
- other spans (HTTP, embeddings, retrieval, workflows …) are not usage events: ignored.

Event ids are `<trace id>:<span id>` (plus `:result`, `:final`, `:end` for the second and
third event of one span), so a re-sent span is stored once.

Session: `gen_ai.conversation.id`, `session.id`, `langfuse.session.id`, else shared from
another span of the same trace in the batch, else the trace id. Workload: `mandate.workload`,
`gen_ai.agent.id`, `gen_ai.agent.name` (span, then resource) or the resource's
`service.name` — the first that names a known workload; else shared from the trace; else the
token's only workload. It must be one the token is bound to, or the span is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from governance.ingest.access import IngestToken, workload_ids_for
from governance.ingest.records import (
    MAX_INT,
    EventRecord,
    Rejection,
    arguments_hash,
    has_nul,
    timestamp_problem,
)

MAX_SPANS = 4096
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id")
WORKLOAD_KEYS = ("mandate.workload", "gen_ai.agent.id", "gen_ai.agent.name")
INFERENCE = frozenset({"chat", "generate_content", "text_completion"})
OPENINFERENCE_KINDS = {"LLM": "chat", "TOOL": "execute_tool", "AGENT": "invoke_agent"}
KNOWN_OPERATIONS = INFERENCE | {"execute_tool", "invoke_agent"}
# Bulky or sensitive values kept out of the stored attributes (content goes to `content`).
CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "input.value",
        "output.value",
        "tool.parameters",
    }
)
MAX_ATTRIBUTE_TEXT = 1000
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "llm.token_count.completion_details.reasoning",
)


class OtlpInvalid(Exception):
    """The body as a whole cannot be read: answered with 400."""


class OtlpTooLarge(Exception):
    """More spans than MAX_SPANS: answered with 413."""


@dataclass(slots=True)
class OtlpSpan:
    index: int  # position in the request, for partial-success messages
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int = 0
    status_message: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# --- protobuf ------------------------------------------------------------------------------


def _pb_value(value) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _pb_attributes(key_values) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in key_values}


def spans_from_protobuf(body: bytes) -> tuple[list[OtlpSpan], list[Rejection]]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as error:
        raise OtlpInvalid(f"The body is not an ExportTraceServiceRequest: {error}") from None
    spans: list[OtlpSpan] = []
    rejected: list[Rejection] = []
    index = 0
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if index >= MAX_SPANS:
                    raise OtlpTooLarge(index)
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    rejected.append(
                        Rejection(
                            index,
                            "",
                            "invalid_id",
                            "A span needs a 16-byte trace id and an 8-byte span id.",
                        )
                    )
                else:
                    spans.append(
                        OtlpSpan(
                            index=index,
                            trace_id=trace_id,
                            span_id=span_id,
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_pb_attributes(span.attributes),
                            resource=resource,
                            status_code=span.status.code,
                            status_message=span.status.message,
                            events=[(e.name, _pb_attributes(e.attributes)) for e in span.events],
                        )
                    )
                index += 1
    return spans, rejected


# --- JSON (walked by hand: ids are hex, int64s are strings) ---------------------------------


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        text = value["stringValue"]
        return text if isinstance(text, str) else None
    if "boolValue" in value:
        return value["boolValue"] is True
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "doubleValue" in value:
        number = value["doubleValue"]
        return float(number) if isinstance(number, (int, float)) else None
    if "arrayValue" in value:
        return [_json_value(v) for v in _list(value["arrayValue"], "values")]
    if "kvlistValue" in value:
        return _json_attributes(_list(value["kvlistValue"], "values"))
    if "bytesValue" in value:
        raw = value["bytesValue"]
        return raw if isinstance(raw, str) else None
    return None


def _json_attributes(key_values: Any) -> dict[str, Any]:
    if not isinstance(key_values, list):
        return {}
    return {
        kv["key"]: _json_value(kv.get("value"))
        for kv in key_values
        if isinstance(kv, dict) and isinstance(kv.get("key"), str)
    }


def _json_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 25:
        return int(value)
    return None


def _hex_id(value: Any, length: int) -> str | None:
    if not isinstance(value, str) or len(value) != length:
        return None
    try:
        bytes.fromhex(value)
    except ValueError:
        return None
    return value.lower()


def _list(container: Any, key: str) -> list:
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, list) else []


def spans_from_json(body: bytes) -> tuple[list[OtlpSpan], list[Rejection]]:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise OtlpInvalid(f"The body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans", []), list):
        raise OtlpInvalid('Expected an ExportTraceServiceRequest: {"resourceSpans": [ … ]}.')
    spans: list[OtlpSpan] = []
    rejected: list[Rejection] = []
    index = 0
    try:
        for resource_spans in _list(document, "resourceSpans"):
            resource_part = (
                resource_spans.get("resource") if isinstance(resource_spans, dict) else None
            )
            resource = _json_attributes(_list(resource_part, "attributes"))
            scopes = _list(resource_spans, "scopeSpans") or _list(
                resource_spans, "instrumentationLibrarySpans"
            )
            for scope_spans in scopes:
                for span in _list(scope_spans, "spans"):
                    if index >= MAX_SPANS:
                        raise OtlpTooLarge(index)
                    parsed = _json_span(index, span, resource)
                    if isinstance(parsed, str):
                        rejected.append(Rejection(index, "", "invalid_span", parsed))
                    else:
                        spans.append(parsed)
                    index += 1
    except RecursionError:
        raise OtlpInvalid("The body nests too deeply.") from None
    return spans, rejected


def _json_span(index: int, span: Any, resource: dict[str, Any]) -> OtlpSpan | str:
    if not isinstance(span, dict):
        return "A span must be an object."
    trace_id = _hex_id(span.get("traceId"), 32)
    span_id = _hex_id(span.get("spanId"), 16)
    if trace_id is None or span_id is None:
        return "A span needs a 32-hex-digit traceId and a 16-hex-digit spanId."
    parent = span.get("parentSpanId") or ""
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    events = []
    for event in _list(span, "events"):
        if isinstance(event, dict) and isinstance(event.get("name"), str):
            events.append((event["name"], _json_attributes(event.get("attributes"))))
    name = span.get("name")
    return OtlpSpan(
        index=index,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_hex_id(parent, 16) or "",
        name=name if isinstance(name, str) else "",
        start_ns=_json_int(span.get("startTimeUnixNano")) or 0,
        end_ns=_json_int(span.get("endTimeUnixNano")) or 0,
        attributes=_json_attributes(span.get("attributes")),
        resource=resource,
        status_code=_json_int(status.get("code")) or 0,
        status_message=status.get("message") if isinstance(status.get("message"), str) else "",
        events=events,
    )


# --- mapping -------------------------------------------------------------------------------


def _first(attributes: dict[str, Any], keys) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value not in (None, "", [], {}):
            return value
    return None


def _count(attributes: dict[str, Any], *keys: str) -> int:
    value = _first(attributes, keys)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, min(int(value), MAX_INT))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _messages(value: Any) -> list[dict]:
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            return []
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _parts_text(message: dict, kinds=("text",)) -> str:
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [
            _as_text(p.get("content"))
            for p in parts
            if isinstance(p, dict) and p.get("type") in kinds and p.get("content") is not None
        ]
        return "\n".join(t for t in texts if t)
    content = message.get("content")
    return content if isinstance(content, str) and "text" in kinds else ""


def _tool_calls_text(message: dict) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list):
        return ""
    calls = [
        f"{p.get('name')}({_as_text(p.get('arguments'))})"
        for p in parts
        if isinstance(p, dict) and p.get("type") == "tool_call"
    ]
    return "\n".join(calls)


def original_request(span: OtlpSpan) -> str:
    for message in _messages(span.attributes.get("gen_ai.input.messages")):
        if message.get("role") == "user" and (text := _parts_text(message)):
            return text
    for name, attributes in span.events:
        if name == "gen_ai.user.message" and isinstance(attributes.get("content"), str):
            return attributes["content"]
        if name == "gen_ai.content.prompt" and attributes.get("gen_ai.prompt"):
            return _as_text(attributes["gen_ai.prompt"])
    return _as_text(span.attributes.get("input.value"))


def final_output(span: OtlpSpan) -> str:
    for message in reversed(_messages(span.attributes.get("gen_ai.output.messages"))):
        if text := _parts_text(message) or _tool_calls_text(message):
            return text
    for name, attributes in span.events:
        if name == "gen_ai.content.completion" and attributes.get("gen_ai.completion"):
            return _as_text(attributes["gen_ai.completion"])
    return _as_text(span.attributes.get("output.value"))


def reasoning_text(span: OtlpSpan) -> str:
    messages = _messages(span.attributes.get("gen_ai.output.messages"))
    reasoning = "\n".join(t for m in messages if (t := _parts_text(m, ("reasoning",))))
    return reasoning or "\n".join(t for m in messages if (t := _parts_text(m)))


def operation(span: OtlpSpan) -> str:
    op = span.attributes.get("gen_ai.operation.name")
    if isinstance(op, str) and op:
        return op
    kind = span.attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[kind.upper()]
    first_word = span.name.split(" ", 1)[0]
    return first_word if first_word in KNOWN_OPERATIONS else ""


def _timestamp(nanos: int) -> datetime | None:
    if nanos <= 0:
        return None
    try:
        return EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        return None


def _stored_attributes(span: OtlpSpan) -> str:
    kept: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "span_name": span.name[:MAX_ATTRIBUTE_TEXT],
    }
    if span.parent_span_id:
        kept["parent_span_id"] = span.parent_span_id
    if span.status_code == 2:
        kept["error"] = span.status_message[:MAX_ATTRIBUTE_TEXT] or True
    for key, value in span.attributes.items():
        if key in CONTENT_KEYS or (isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT):
            continue
        kept[key] = value
    return msgspec.json.encode(kept).decode()


def _workload_candidates(span: OtlpSpan) -> list[str]:
    names = []
    for source in (span.attributes, span.resource):
        for key in WORKLOAD_KEYS:
            if isinstance(value := source.get(key), str) and value:
                names.append(value)
    if isinstance(service := span.resource.get("service.name"), str) and service:
        names.append(service)
    return names


def spans_to_records(
    spans: list[OtlpSpan], *, token: IngestToken, now: datetime
) -> tuple[list[EventRecord], list[Rejection]]:
    """Map spans onto events; a span that cannot be stored is rejected with a reason."""
    candidates = {id(span): _workload_candidates(span) for span in spans}
    known = workload_ids_for({name for names in candidates.values() for name in names})
    trace_workload: dict[str, int] = {}
    trace_session: dict[str, str] = {}
    for span in spans:
        named = next((known[n] for n in candidates[id(span)] if n in known), None)
        if named is not None:
            trace_workload.setdefault(span.trace_id, named)
        session = _first(span.attributes, SESSION_KEYS)
        if isinstance(session, (str, int)) and not isinstance(session, bool):
            trace_session.setdefault(span.trace_id, str(session))

    records: list[EventRecord] = []
    rejected: list[Rejection] = []
    for span in spans:
        index, key = span.index, f"{span.trace_id}:{span.span_id}"
        op = operation(span)
        if op not in KNOWN_OPERATIONS:
            continue
        named = next((known[n] for n in candidates[id(span)] if n in known), None)
        workload_id = named or trace_workload.get(span.trace_id) or token.only_workload_id
        if workload_id is None:
            names = ", ".join(candidates[id(span)]) or "none given"
            rejected.append(
                Rejection(index, key, "unknown_workload", f"No known workload ({names}).")
            )
            continue
        if not token.may_report_for(workload_id):
            message = "This token may not report for the workload."
            rejected.append(Rejection(index, key, "workload_not_bound", message))
            continue
        session = trace_session.get(span.trace_id, span.trace_id)[:200]
        made = _span_events(span, op, workload_id, session, now)
        if isinstance(made, tuple):
            rejected.append(Rejection(index, key, *made))
        else:
            records.extend(made)
    return records, rejected


def _span_events(
    span: OtlpSpan, op: str, workload_id: int, session: str, now: datetime
) -> list[EventRecord] | tuple[str, str, str]:
    """The events one gen_ai span stands for, or (code, message, field) when it cannot be kept."""
    started = _timestamp(span.start_ns)
    if started is None:
        return "bad_timestamp", "startTimeUnixNano is missing.", "startTimeUnixNano"
    if problem := timestamp_problem(started, now):
        return "bad_timestamp", problem, "startTimeUnixNano"
    ended = _timestamp(span.end_ns)
    if ended is None or ended < started:
        ended = started
    duration_ms = (
        min((span.end_ns - span.start_ns) // 1_000_000, MAX_INT)
        if span.end_ns >= span.start_ns
        else None
    )
    key = f"{span.trace_id}:{span.span_id}"
    attributes = _stored_attributes(span)
    a = span.attributes
    base = EventRecord(
        workload_id, session, key, "", started, "", "", "", "", 0, 0, 0, duration_ms, attributes
    )
    made: list[EventRecord] = []
    if op == "execute_tool":
        tool = _first(a, ("gen_ai.tool.name", "tool.name"))
        if not isinstance(tool, str):
            tool = span.name.split(" ", 1)[1] if span.name.startswith("execute_tool ") else ""
        if not tool or len(tool) > 80:
            message = "A tool span needs gen_ai.tool.name (at most 80 characters)."
            return ("missing_field" if not tool else "invalid_field"), message, "gen_ai.tool.name"
        call_id = _as_text(_first(a, ("gen_ai.tool.call.id",)))[:200]
        args = _first(a, ("gen_ai.tool.call.arguments", "tool.parameters", "input.value"))
        call = base._replace(
            type="tool_call", tool=tool, tool_call_id=call_id, arguments_hash=arguments_hash(args)
        )
        made.append(call)
        result = _first(a, ("gen_ai.tool.call.result", "output.value"))
        if result is not None:
            made.append(
                call._replace(
                    event_id=key + ":result",
                    type="tool_result",
                    occurred_at=ended,
                    arguments_hash="",
                    content=_as_text(result),
                    duration_ms=None,
                )
            )
    elif op in INFERENCE:
        made.append(
            base._replace(
                type="reasoning_step",
                content=reasoning_text(span),
                input_tokens=_count(a, *INPUT_TOKENS),
                output_tokens=_count(a, *OUTPUT_TOKENS),
                reasoning_tokens=_count(a, *REASONING_TOKENS),
            )
        )
    else:  # invoke_agent
        made.append(base._replace(type="session_start", content=original_request(span)))
        end = base._replace(occurred_at=ended, duration_ms=None)
        if output := final_output(span):
            made.append(end._replace(event_id=key + ":final", type="final_action", content=output))
        if span.end_ns:
            made.append(end._replace(event_id=key + ":end", type="session_end"))
    texts = (base.session_key, attributes, *(r.content for r in made), *(r.tool for r in made))
    if any("\x00" in text or "\\u0000" in text for text in texts) or has_nul(made[0].tool_call_id):
        return "invalid_field", "Text may not contain NUL (U+0000) characters.", ""
    return made


def export_response(rejected: list[Rejection], *, as_json: bool) -> bytes:
    """ExportTraceServiceResponse: empty on full success, else partialSuccess."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        shown = "; ".join(
            f"span {r.index} ({r.event_id or '?'}): {r.code}: {r.message}" for r in rejected[:10]
        )
        more = f" (and {len(rejected) - 10} more)" if len(rejected) > 10 else ""
        response.partial_success.error_message = shown + more
    if not as_json:
        return response.SerializeToString()
    if not rejected:
        return b"{}"
    return msgspec.json.encode(
        {
            "partialSuccess": {
                "rejectedSpans": str(len(rejected)),
                "errorMessage": response.partial_success.error_message,
            }
        }
    )


def status_body(grpc_code: int, message: str, *, as_json: bool) -> bytes:
    """A google.rpc.Status (code, message), the body OTLP uses for errors."""
    if as_json:
        return msgspec.json.encode({"code": grpc_code, "message": message})
    encoded = message.encode()
    return b"\x08" + _varint(grpc_code) + b"\x12" + _varint(len(encoded)) + encoded


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
