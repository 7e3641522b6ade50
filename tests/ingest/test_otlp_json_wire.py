"""OTLP/JSON read by hand: the same span reads alike in both encodings, and a field of the
wrong shape is refused, never read as empty."""

import json

import pytest

from governance.ingest.otlp_wire import OtlpInvalid, spans_from_json, spans_from_protobuf
from tests.ingest.otlp_builders import json_request, protobuf_request, span

SPAN = span("00000000000000b1", "chat", {"gen_ai.operation.name": "chat"})


def _json(document) -> bytes:
    return json.dumps(document).encode()


def _with_attributes(document, attributes):
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = attributes
    return document


def test_int_double_and_bytes_values_read_as_protobuf_reads_them():
    protobuf = protobuf_request([{**SPAN, "attributes": {"n": -5, "x": 1.5}}])
    [from_protobuf], _ = spans_from_protobuf(protobuf)
    document = _with_attributes(
        json_request([SPAN]),
        [
            {"key": "n", "value": {"intValue": "-5"}},
            {"key": "x", "value": {"doubleValue": "1.5"}},
            {"key": "b", "value": {"bytesValue": "AQI="}},
            {"key": "big", "value": {"intValue": "99999999999999999999"}},
            {"key": "sup", "value": {"intValue": "\u00b2"}},
        ],
    )
    [from_json], rejected = spans_from_json(_json(document))
    assert rejected == []
    assert from_json.attributes == {"n": -5, "x": 1.5, "b": "0102", "big": None, "sup": None}
    assert {k: from_protobuf.attributes[k] for k in ("n", "x")} == {"n": -5, "x": 1.5}


def test_a_timestamp_of_non_ascii_digits_is_not_read_as_a_number():
    document = json_request([SPAN])
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "\u00b2"
    [parsed], _ = spans_from_json(_json(document))
    assert parsed.start_ns == 0


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["resourceSpans"][0].update(scopeSpans={"spans": []}),
        lambda d: d["resourceSpans"][0]["scopeSpans"][0].update(spans={"a": 1}),
        lambda d: d["resourceSpans"][0].update(resource=[]),
        lambda d: d["resourceSpans"][0]["resource"].update(attributes={"service.name": "x"}),
        lambda d: d.update(resourceSpans=["not an object"]),
    ],
)
def test_a_structure_of_the_wrong_shape_refuses_the_request(breakage):
    document = json_request([SPAN])
    breakage(document)
    with pytest.raises(OtlpInvalid, match="must be"):
        spans_from_json(_json(document))


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.operation.name": "chat"},
        [{"key": "k", "value": "not an AnyValue"}],
        [{"value": {"stringValue": "no key"}}],
        [{"key": "k", "value": {"arrayValue": {"values": {"a": 1}}}}],
    ],
)
def test_attributes_of_the_wrong_shape_refuse_their_span(attributes):
    document = json_request([SPAN, {**SPAN, "span_id": "00000000000000b2"}])
    _with_attributes(document, attributes)
    spans, rejected = spans_from_json(_json(document))
    assert [s.span_id for s in spans] == ["00000000000000b2"]
    assert [(r.position, r.code) for r in rejected] == [(0, "invalid_span")]
    assert "must be" in rejected[0].message


def test_absent_or_null_fields_read_as_empty():
    document = json_request([SPAN])
    item = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    item["attributes"], item["events"], item["status"] = None, None, None
    [parsed], rejected = spans_from_json(_json(document))
    assert (parsed.attributes, parsed.events, parsed.status_code, rejected) == ({}, [], 0, [])


def test_a_body_nested_past_the_recursion_limit_is_refused():
    with pytest.raises(OtlpInvalid, match="nests too deeply"):
        spans_from_json(b"[" * 5000 + b"]" * 5000)
    nested = b'{"resourceSpans": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    with pytest.raises(OtlpInvalid, match="nests too deeply"):
        spans_from_json(nested)
