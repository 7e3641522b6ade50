"""Build OTLP requests by hand, in protobuf and in OTLP/JSON (hex ids, string int64s)."""

import json
from datetime import UTC, datetime, timedelta

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE = "5b8efff798038103d269b633813fc60c"
START_NS = int((datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0).timestamp() * 1e9)


def span(span_id: str, name: str, attributes: dict, *, offset_ms=0, duration_ms=100, **extra):
    start = START_NS + offset_ms * 1_000_000
    return {
        "trace_id": extra.pop("trace_id", TRACE),
        "span_id": span_id,
        "parent_span_id": extra.pop("parent_span_id", ""),
        "name": name,
        "start": start,
        "end": start + duration_ms * 1_000_000,
        "attributes": attributes,
        **extra,
    }


def agent_trace(*, conversation="conv-1", agent="support-triage"):
    """invoke_agent → chat → execute_tool, content captured."""
    return [
        span(
            "00000000000000a1",
            f"invoke_agent {agent}",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": conversation,
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "system", "parts": [{"type": "text", "content": "Be useful"}]},
                        {"role": "user", "parts": [{"type": "text", "content": "Refund #1234"}]},
                    ]
                ),
                "gen_ai.output.messages": [
                    {"role": "assistant", "parts": [{"type": "text", "content": "Refund sent"}]}
                ],
            },
            duration_ms=5000,
        ),
        span(
            "00000000000000a2",
            "chat o1",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "o1",
                "gen_ai.usage.input_tokens": 800,
                "gen_ai.usage.output_tokens": 1500,
                "gen_ai.usage.reasoning.output_tokens": 1200,
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "reasoning", "content": "Check the ticket"}],
                        }
                    ]
                ),
            },
            parent_span_id="00000000000000a1",
            offset_ms=100,
            duration_ms=2000,
        ),
        span(
            "00000000000000a3",
            "execute_tool ticket-read",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "ticket-read",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"ticket": 1234}',
                "gen_ai.tool.call.result": "Customer wants a refund",
            },
            parent_span_id="00000000000000a1",
            offset_ms=2200,
            duration_ms=40,
        ),
    ]


def _pb_set(any_value, value):
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    elif isinstance(value, float):
        any_value.double_value = value
    elif isinstance(value, str):
        any_value.string_value = value
    elif isinstance(value, list):
        for item in value:
            _pb_set(any_value.array_value.values.add(), item)
    elif isinstance(value, dict):
        for key, item in value.items():
            kv = any_value.kvlist_value.values.add()
            kv.key = key
            _pb_set(kv.value, item)


def protobuf_request(spans, resource=None) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (resource or {}).items():
        kv = resource_spans.resource.attributes.add()
        kv.key = key
        _pb_set(kv.value, value)
    scope = resource_spans.scope_spans.add()
    for item in spans:
        pb = scope.spans.add()
        pb.trace_id = bytes.fromhex(item["trace_id"])
        pb.span_id = bytes.fromhex(item["span_id"])
        if item["parent_span_id"]:
            pb.parent_span_id = bytes.fromhex(item["parent_span_id"])
        pb.name = item["name"]
        pb.start_time_unix_nano = item["start"]
        pb.end_time_unix_nano = item["end"]
        for key, value in item["attributes"].items():
            kv = pb.attributes.add()
            kv.key = key
            _pb_set(kv.value, value)
    return request.SerializeToString()


def _json_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {
        "kvlistValue": {"values": [{"key": k, "value": _json_value(v)} for k, v in value.items()]}
    }


def _json_attributes(attributes):
    return [{"key": k, "value": _json_value(v)} for k, v in attributes.items()]


def json_request(spans, resource=None) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _json_attributes(resource or {})},
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": item["trace_id"],
                                "spanId": item["span_id"],
                                "parentSpanId": item["parent_span_id"],
                                "name": item["name"],
                                "kind": 1,
                                "startTimeUnixNano": str(item["start"]),
                                "endTimeUnixNano": str(item["end"]),
                                "attributes": _json_attributes(item["attributes"]),
                            }
                            for item in spans
                        ],
                    }
                ],
            }
        ]
    }
