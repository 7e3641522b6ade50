"""OTLP/HTTP on the wire: ExportTraceServiceRequest bodies (protobuf or OTLP/JSON) to plain
`OtlpSpan`s, and the response and error bodies OTLP expects back.

OTLP/JSON is walked by hand: its trace and span ids are hex (protobuf's json_format would
read them as base64 and yield wrong bytes) and its int64s are decimal strings.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from governance.ingest.records import (
    EventRecord,
    Rejection,
    json_decode_keeping_surrogates,
    surrogate_message,
    unpaired_surrogate,
)
from governance.ingest.store import Repeat

MAX_SPANS = 4096


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
    return _first_copies(spans, rejected)


# --- JSON (walked by hand: ids are hex, int64s are strings) ---------------------------------
#
# A field that is absent or null reads as empty, as protobuf would. A field present with the
# wrong shape (`"spans": {…}`, `"attributes": {"k": "v"}`) is refused, never read as empty:
# that would answer success for spans that were never stored. In the request's structure it
# refuses the request (400); inside one span, that span (partialSuccess).

_INT64 = re.compile(r"-?[0-9]{1,19}")
INT64_MIN, INT64_MAX = -(2**63), 2**64 - 1  # int64 and fixed64 (timestamps) share the parser


class _Malformed(Exception):
    """A field has the wrong JSON type; the message names it."""


def _json_value(value: Any, where: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Malformed(f"{where} must be an AnyValue object.")
    if "stringValue" in value:
        text = value["stringValue"]
        return text if isinstance(text, str) else None
    if "boolValue" in value:
        return value["boolValue"] is True
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "doubleValue" in value:
        return _json_double(value["doubleValue"])
    if "arrayValue" in value:
        values = _list(_object(value["arrayValue"], f"{where}.arrayValue"), "values", where)
        return [_json_value(v, f"{where}.arrayValue.values[{n}]") for n, v in enumerate(values)]
    if "kvlistValue" in value:
        kvlist = _object(value["kvlistValue"], f"{where}.kvlistValue")
        return _json_attributes(kvlist, "values", f"{where}.kvlistValue")
    if "bytesValue" in value:
        return _json_bytes(value["bytesValue"])
    return None


def _json_attributes(container: dict, key: str, where: str) -> dict[str, Any]:
    attributes = {}
    for n, kv in enumerate(_list(container, key, where)):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _Malformed(f"{where}.{key}[{n}] must be a KeyValue with a string key.")
        attributes[kv["key"]] = _json_value(kv.get("value"), f"{where}.{key}[{n}].value")
    return attributes


def _json_int(value: Any) -> int | None:
    """An int64 or fixed64: a JSON number or, as OTLP/JSON writes them, a decimal string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _INT64.fullmatch(value):  # ASCII digits only, not "²"
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def _json_double(value: Any) -> float | None:
    """A double: a JSON number or a string ("1.5", "NaN", "Infinity"), as proto3 JSON allows."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.isascii():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _json_bytes(value: Any) -> str | None:
    """bytesValue is base64 in OTLP/JSON; stored as hex, as the protobuf path stores it, so a
    span reads the same whichever encoding carried it."""
    if not isinstance(value, str):
        return None
    padded = value + "=" * (-len(value) % 4)  # proto3 JSON parsers accept it unpadded
    # Either alphabet, standard or URL-safe, as proto3 JSON parsers accept both.
    alphabet = b"-_" if ("-" in value or "_" in value) else None
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _hex_id(value: Any, length: int) -> str | None:
    if not isinstance(value, str) or len(value) != length:
        return None
    try:
        bytes.fromhex(value)
    except ValueError:
        return None
    return value.lower()


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{where} must be an object.")
    return value


def _list(container: dict, key: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{where}.{key} must be a list.")
    return value


def spans_from_json(body: bytes) -> tuple[list[OtlpSpan], list[Rejection]]:
    damaged = False  # read past unpaired surrogates: spans holding one are rejected
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        document, damaged = _decode_around_surrogates(body, error), True
    except RecursionError:
        raise OtlpInvalid("The body nests too deeply.") from None
    if not isinstance(document, dict):
        raise OtlpInvalid('Expected an ExportTraceServiceRequest: {"resourceSpans": [ … ]}.')
    spans: list[OtlpSpan] = []
    rejected: list[Rejection] = []
    index = 0
    try:
        for r, resource_spans in enumerate(_list(document, "resourceSpans", "$")):
            where = f"$.resourceSpans[{r}]"
            resource_spans = _object(resource_spans, where)
            resource_part = _object(resource_spans.get("resource"), f"{where}.resource")
            resource = _json_attributes(resource_part, "attributes", f"{where}.resource")
            resource_damage = (
                unpaired_surrogate(resource_part, f"{where}.resource") if damaged else None
            )
            scope_key = "scopeSpans"
            if "scopeSpans" not in resource_spans:  # the name before OTLP 0.19
                scope_key = "instrumentationLibrarySpans"
            for s, scope_spans in enumerate(_list(resource_spans, scope_key, where)):
                scope_where = f"{where}.{scope_key}[{s}]"
                for span in _list(_object(scope_spans, scope_where), "spans", scope_where):
                    if index >= MAX_SPANS:
                        raise OtlpTooLarge(index)
                    if damaged and (found := resource_damage or unpaired_surrogate(span, "span")):
                        rejected.append(_surrogate_rejection(index, span, found))
                        index += 1
                        continue
                    parsed = _json_span(index, span, resource)
                    if isinstance(parsed, str):
                        rejected.append(Rejection(index, "", "invalid_span", parsed))
                    else:
                        spans.append(parsed)
                    index += 1
    except _Malformed as error:
        raise OtlpInvalid(f"The body is not an ExportTraceServiceRequest: {error}") from None
    except RecursionError:
        raise OtlpInvalid("The body nests too deeply.") from None
    return _first_copies(spans, rejected)


def _decode_around_surrogates(body: bytes, error: msgspec.DecodeError) -> Any:
    """Only for a body msgspec cannot read: msgspec refuses a whole body for one unpaired
    UTF-16 surrogate escape (`"\\ud83d"`, a string cut inside an emoji), so it is read again
    by the standard library and the spans holding one are rejected one by one. Anything else
    stays a 400 with msgspec's reason."""
    try:
        document = json_decode_keeping_surrogates(body)
    except ValueError:
        raise OtlpInvalid(f"The body is not valid JSON: {error}") from None
    except RecursionError:
        raise OtlpInvalid("The body nests too deeply.") from None
    if not unpaired_surrogate(document):
        raise OtlpInvalid(f"The body is not valid JSON: {error}")
    return document


_ATTRIBUTE_AT = re.compile(r"^span\.attributes\[([0-9]+)\]")


def _surrogate_rejection(index: int, span: Any, found: tuple[str, str]) -> Rejection:
    where, message = found[0], surrogate_message(found)
    attribute = _ATTRIBUTE_AT.match(where)
    if attribute and isinstance(span, dict):  # name the attribute, as the path counts them
        kv = span["attributes"][int(attribute.group(1))]
        key = kv.get("key") if isinstance(kv, dict) else None
        if isinstance(key, str) and not unpaired_surrogate(key):
            message += f" ({key})"
    key = ""
    if isinstance(span, dict):
        trace_id, span_id = _hex_id(span.get("traceId"), 32), _hex_id(span.get("spanId"), 16)
        key = f"{trace_id}:{span_id}" if trace_id and span_id else ""
    return Rejection(index, key, "invalid_field", message)


def _json_span(index: int, span: Any, resource: dict[str, Any]) -> OtlpSpan | str:
    """The span, or why it is refused."""
    if not isinstance(span, dict):
        return "A span must be an object."
    trace_id = _hex_id(span.get("traceId"), 32)
    span_id = _hex_id(span.get("spanId"), 16)
    if trace_id is None or span_id is None:
        return "A span needs a 32-hex-digit traceId and a 16-hex-digit spanId."
    try:
        status = _object(span.get("status"), "status")
        events = []
        for n, event in enumerate(_list(span, "events", "span")):
            event = _object(event, f"events[{n}]")
            if isinstance(event.get("name"), str):
                attributes = _json_attributes(event, "attributes", f"events[{n}]")
                events.append((event["name"], attributes))
        attributes = _json_attributes(span, "attributes", "span")
    except _Malformed as error:
        return str(error)
    parent = span.get("parentSpanId") or ""
    name = span.get("name")
    message = status.get("message")
    return OtlpSpan(
        index=index,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_hex_id(parent, 16) or "",
        name=name if isinstance(name, str) else "",
        start_ns=_json_int(span.get("startTimeUnixNano")) or 0,
        end_ns=_json_int(span.get("endTimeUnixNano")) or 0,
        attributes=attributes,
        resource=resource,
        status_code=_json_int(status.get("code")) or 0,
        status_message=message if isinstance(message, str) else "",
        events=events,
    )


def _first_copies(
    spans: list[OtlpSpan], rejected: list[Rejection]
) -> tuple[list[OtlpSpan], list[Rejection]]:
    """Each span once: (trace id, span id) is the idempotency key, so a second copy of a span
    in one export is dropped as a re-sent span is (accepted, stored once), and a different
    span under the same ids is rejected rather than dropped unsaid."""
    first: dict[tuple[str, str], OtlpSpan] = {}
    kept: list[OtlpSpan] = []
    for span in spans:
        earlier = first.setdefault((span.trace_id, span.span_id), span)
        if earlier is span:
            kept.append(span)
        elif replace(span, index=earlier.index) != earlier:
            message = f"Span {earlier.index} of this export has the same trace and span ids."
            key = f"{span.trace_id}:{span.span_id}"
            rejected.append(Rejection(span.index, key, "event_id_reused", message))
    return kept, rejected


# --- answers -------------------------------------------------------------------------------


def reused_spans(
    spans: list[OtlpSpan], records: Sequence[EventRecord], repeats: Sequence[Repeat]
) -> list[Rejection]:
    """The spans with an event whose id was already stored for a different event (see
    `store`), one rejection each. A span stored before and sent again is no rejection: OTLP
    expects re-sent spans."""
    problems = [(records[position].event_id, problem) for position, problem in repeats if problem]
    if not problems:
        return []
    index_of = {f"{span.trace_id}:{span.span_id}": span.index for span in spans}
    rejected: dict[int, Rejection] = {}
    for event_id, problem in problems:
        key = ":".join(event_id.split(":", 2)[:2])  # `<trace>:<span>[:suffix]`
        message = problem if event_id == key else f"{event_id}: {problem}"
        index = index_of[key]
        rejected.setdefault(index, Rejection(index, key, "event_id_reused", message))
    return list(rejected.values())


def export_response(rejected: list[Rejection], *, as_json: bool) -> bytes:
    """ExportTraceServiceResponse: empty on full success, else partialSuccess."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        shown = "; ".join(
            f"span {r.position} ({r.event_id or '?'}): {r.code}: {r.message}" for r in rejected[:10]
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
