"""POST /v1/traces: protobuf and JSON, gzip, the gen_ai mapping, binding, partial success."""

import gzip
import json

import pytest
from django.core.cache import cache
from django.db import OperationalError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from governance.ingest import views
from tests.factories import ClassifiedWorkloadFactory
from tests.ingest.otlp_builders import TRACE, agent_trace, json_request, protobuf_request, span
from workloads.models import Session, SessionTrace, UsageEvent

pytestmark = pytest.mark.django_db
PROTOBUF = "application/x-protobuf"


@pytest.fixture(autouse=True)
def _fresh_rate_history():
    cache.clear()


@pytest.fixture
def export(client, secret):
    def send(body, *, content_type=PROTOBUF, token=None, **headers):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        return client.post(
            "/v1/traces",
            data=body,
            content_type=content_type,
            headers={"Authorization": f"Bearer {token or secret}", **headers},
        )

    return send


def partial(response) -> tuple[int, str]:
    if response["Content-Type"] == PROTOBUF:
        message = ExportTraceServiceResponse.FromString(response.content)
        return message.partial_success.rejected_spans, message.partial_success.error_message
    body = response.json().get("partialSuccess", {})
    return int(body.get("rejectedSpans", 0)), body.get("errorMessage", "")


def assert_agent_trace_stored(workload):
    session = Session.objects.get(workload=workload, external_id="conv-1")
    assert session.source == "otlp"
    assert session.original_request == "Refund #1234"
    assert session.final_action == "Refund sent"
    assert session.ended_at is not None
    events = {e.event_id: e for e in UsageEvent.objects.filter(session=session)}
    root, chat, tool = (f"{TRACE}:00000000000000a{n}" for n in (1, 2, 3))
    assert {k: e.type for k, e in events.items()} == {
        root: "session_start",
        root + ":final": "final_action",
        root + ":end": "session_end",
        chat: "reasoning_step",
        tool: "tool_call",
        tool + ":result": "tool_result",
    }
    step = events[chat]
    assert (step.input_tokens, step.output_tokens, step.reasoning_tokens) == (800, 1500, 1200)
    assert step.content == "Check the ticket"
    assert step.duration_ms == 2000
    call = events[tool]
    assert (call.tool, call.tool_call_id, call.duration_ms) == ("ticket-read", "call_1", 40)
    assert call.arguments_hash
    assert events[tool + ":result"].content == "Customer wants a refund"
    assert call.attributes["trace_id"] == TRACE
    assert "gen_ai.tool.call.arguments" not in call.attributes


def test_it_maps_protobuf_gen_ai_spans_onto_events(export, workload):
    response = export(protobuf_request(agent_trace()))
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF
    assert partial(response) == (0, "")
    assert_agent_trace_stored(workload)


def test_it_maps_json_spans_with_hex_ids(export, workload):
    response = export(json_request(agent_trace()), content_type="application/json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}
    assert_agent_trace_stored(workload)


def test_it_accepts_gzip_in_both_encodings(export, workload):
    export(gzip.compress(protobuf_request(agent_trace())), **{"Content-Encoding": "gzip"})
    other_trace = [{**s, "trace_id": "ab" * 16} for s in agent_trace(conversation="c2")]
    body = gzip.compress(json.dumps(json_request(other_trace)).encode())
    response = export(body, content_type="application/json", **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert Session.objects.filter(external_id__in=["conv-1", "c2"]).count() == 2


def test_it_stores_a_resent_span_once(export):
    body = protobuf_request(agent_trace())
    export(body)
    assert partial(export(body)) == (0, "")  # OTLP expects re-sent spans: no rejection
    assert UsageEvent.objects.count() == 6


@pytest.mark.parametrize("content_type", [PROTOBUF, "application/json"])
def test_a_span_reusing_stored_ids_for_another_span_is_rejected(export, content_type):
    """Stored once, a span's ids cannot be answered as accepted for a different span."""
    encode = protobuf_request if content_type == PROTOBUF else json_request
    first = agent_trace()
    export(encode(first), content_type=content_type)
    later = [{**item, "start": item["start"] + 60 * 10**9} for item in first[1:]]
    tool = span("00000000000000b1", "execute_tool crm-api", {"gen_ai.tool.name": "crm-api"})
    response = export(encode([*later, tool]), content_type=content_type)
    rejected, message = partial(response)
    assert rejected == 2
    assert f"span 0 ({TRACE}:00000000000000a2): event_id_reused" in message
    assert f"span 1 ({TRACE}:00000000000000a3): event_id_reused" in message
    assert "its occurred_at differs" in message
    assert UsageEvent.objects.count() == 7  # the six first stored, and the new tool span


def test_a_span_twice_in_one_export_is_stored_once_and_a_different_one_rejected(export):
    root, chat, tool = agent_trace()
    other = {**tool, "start": tool["start"] + 1}  # another span under the tool span's ids
    response = export(protobuf_request([root, chat, chat, tool, other]))
    rejected, message = partial(response)
    assert rejected == 1
    assert message.startswith(f"span 4 ({TRACE}:00000000000000a3): event_id_reused: Span 3 ")
    assert UsageEvent.objects.count() == 6


def test_a_span_resent_after_its_session_was_named_is_no_reuse(export, workload):
    """Children exported first sit under the trace id until the root names the session: a
    child sent again then maps to the named session and is still the same span."""
    root, *children = agent_trace()
    export(protobuf_request(children))
    assert partial(export(protobuf_request([root, *children]))) == (0, "")
    assert partial(export(protobuf_request(children))) == (0, "")  # after the fold
    assert_agent_trace_stored(workload)


def test_it_takes_the_session_from_another_span_of_the_trace_or_the_trace(export, workload):
    export(protobuf_request(agent_trace()))  # only the root names the conversation
    assert UsageEvent.objects.filter(session__external_id="conv-1").count() == 6
    other = agent_trace()
    for item in other:
        item["trace_id"] = "0" * 31 + "1"
        item["attributes"].pop("gen_ai.conversation.id", None)
    export(protobuf_request(other))
    assert UsageEvent.objects.filter(session__external_id="0" * 31 + "1").count() == 6


@pytest.mark.parametrize("key", ["gen_ai.conversation.id", "session.id", "langfuse.session.id"])
def test_it_reads_each_session_attribute(export, key):
    tool = span("00000000000000b1", "execute_tool ticket-read", {key: "s-9"})
    export(protobuf_request([tool]))
    assert UsageEvent.objects.get().session.external_id == "s-9"


def test_it_reads_openinference_names(export, workload):
    spans = [
        span(
            "00000000000000c1",
            "agent",
            {"openinference.span.kind": "AGENT", "input.value": "Find the invoice"},
        ),
        span(
            "00000000000000c2",
            "llm",
            {
                "openinference.span.kind": "LLM",
                "llm.token_count.prompt": 10,
                "llm.token_count.completion": 30,
                "llm.token_count.completion_details.reasoning": 20,
                "session.id": "oi-1",
            },
        ),
        span(
            "00000000000000c3",
            "tool",
            {
                "openinference.span.kind": "TOOL",
                "tool.name": "invoice-search",
                "tool.parameters": '{"q": "invoice"}',
            },
        ),
    ]
    export(protobuf_request(spans))
    events = {e.type: e for e in UsageEvent.objects.filter(session__external_id="oi-1")}
    assert events["session_start"].session.original_request == "Find the invoice"
    assert events["reasoning_step"].reasoning_tokens == 20
    assert events["tool_call"].tool == "invoice-search"
    assert "tool_result" not in events


def test_it_ignores_spans_that_are_not_gen_ai(export):
    response = export(protobuf_request([span("00000000000000d1", "GET /tickets", {})]))
    assert partial(response) == (0, "")
    assert not UsageEvent.objects.exists()


def test_it_finds_the_workload_from_service_name_for_a_multi_workload_token(
    export, make_token, workload, other_workload
):
    token = make_token(workloads=[workload, other_workload])
    tool = span("00000000000000e1", "execute_tool web-search", {})
    export(protobuf_request([tool], {"service.name": "research-agent"}), token=token)
    assert UsageEvent.objects.get().workload == other_workload


def test_it_rejects_spans_for_workloads_the_token_is_not_bound_to(export, workload, other_workload):
    spans = agent_trace()
    foreign = span("00000000000000f1", "execute_tool x", {"mandate.workload": "research-agent"})
    foreign["trace_id"] = "f" * 32
    response = export(protobuf_request([*spans, foreign]))
    assert response.status_code == 200
    rejected, message = partial(response)
    assert rejected == 1
    assert "workload_not_bound" in message
    assert not UsageEvent.objects.filter(workload=other_workload).exists()
    assert UsageEvent.objects.filter(workload=workload).count() == 6


def test_a_span_naming_its_workload_is_never_filed_under_another(
    export, make_token, workload, other_workload
):
    """`mandate.workload` decides alone: the service's name (a workload the token may report
    for) does not win over it, and neither does the workload of the span's trace."""
    claimed = span("00000000000000e5", "execute_tool x", {"mandate.workload": "research-agent"})
    response = export(protobuf_request([claimed], {"service.name": workload.slug}))
    assert partial(response)[0] == 1 and "workload_not_bound" in partial(response)[1]
    everywhere = make_token(all_workloads=True)
    named = span("00000000000000e6", "execute_tool x", {"mandate.workload": workload.slug})
    unknown = span("00000000000000e7", "execute_tool y", {"mandate.workload": "no-such"})
    response = export(protobuf_request([named, unknown]), token=everywhere)
    assert partial(response)[0] == 1 and "unknown_workload" in partial(response)[1]
    assert [e.event_id for e in UsageEvent.objects.all()] == [f"{TRACE}:00000000000000e6"]


def test_it_rejects_spans_with_no_known_workload_for_a_multi_workload_token(
    export, make_token, workload, other_workload
):
    token = make_token(workloads=[workload, other_workload])
    tool = span("00000000000000e2", "execute_tool web-search", {})
    response = export(protobuf_request([tool], {"service.name": "unknown"}), token=token)
    assert partial(response)[0] == 1
    # A bound token is not told whether the name exists; one for every workload is.
    assert "workload_not_bound" in partial(response)[1]
    everywhere = make_token(all_workloads=True)
    response = export(protobuf_request([tool], {"service.name": "unknown"}), token=everywhere)
    assert "unknown_workload" in partial(response)[1]


def test_it_counts_bad_spans_in_partial_success(export):
    good = agent_trace()
    body = json_request(good)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[2], "traceId": "not-hex"})  # bad id
    spans.append({**spans[2], "spanId": "00000000000000a9", "startTimeUnixNano": "0"})
    spans.append("not a span")
    response = export(body, content_type="application/json")
    assert response.status_code == 200
    assert partial(response)[0] == 3
    assert UsageEvent.objects.count() == 6


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF),
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"resourceSpans": 7}', "application/json"),
    ],
)
def test_it_answers_400_to_an_unreadable_body(export, body, content_type):
    response = export(body, content_type=content_type)
    assert response.status_code == 400
    assert response["Content-Type"] == content_type


def test_it_answers_413_to_a_body_too_large(export):
    response = export(b"\x00" * (views.MAX_BYTES + 1))
    assert response.status_code == 413


def test_it_answers_415_to_other_content_types(export):
    assert export(b"x", content_type="text/plain").status_code == 415


def test_it_refuses_bad_tokens_and_missing_scope(export, make_token, workload):
    body = protobuf_request(agent_trace())
    assert export(body, token="mnd_wrong").status_code == 401
    assert export(body, token=make_token(scopes=("read",), workloads=[workload])).status_code == 403


def test_it_answers_429_over_the_rate(export, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ingest": "1/min"},
    }
    body = protobuf_request(agent_trace())
    assert export(body).status_code == 200
    response = export(body)
    assert response.status_code == 429
    assert response["Retry-After"]


def test_it_answers_503_with_retry_after_when_overloaded(export, monkeypatch):
    def pool_exhausted(**kwargs):
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(views, "usage_events_store", pool_exhausted)
    response = export(protobuf_request(agent_trace()))
    assert response.status_code == 503
    assert response["Retry-After"] == str(views.RETRY_AFTER_UNAVAILABLE)
    assert response["Content-Type"] == PROTOBUF


def test_partial_success_names_rejected_spans_by_their_position(export, other_workload):
    spans = agent_trace()
    foreign = span("00000000000000f2", "execute_tool x", {"mandate.workload": "research-agent"})
    foreign["trace_id"] = "e" * 32
    body = json_request([*spans, foreign])
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].insert(0, "not a span")
    response = export(body, content_type="application/json")
    rejected, message = partial(response)
    assert rejected == 2
    assert message.startswith("span 0 (?): invalid_span")
    assert "span 4 (" in message


def test_it_answers_400_to_truncated_gzip(export):
    body = gzip.compress(protobuf_request(agent_trace()))[:-12]
    assert export(body, **{"Content-Encoding": "gzip"}).status_code == 400


@pytest.mark.parametrize("name", ["research-agent", "no-such-workload"])
def test_a_bound_token_cannot_tell_which_workloads_exist(
    export, make_token, workload, other_workload, name
):
    """research-agent exists (other_workload's slug); no-such-workload does not. Each answer
    is the same either way."""
    named = span("00000000000000f2", "execute_tool x", {"mandate.workload": name})
    response = export(protobuf_request([named]))
    assert partial(response) == (1, partial(response)[1])
    assert "workload_not_bound" in partial(response)[1]
    # An agent name that is some other workload's slug is just a name: the token's only
    # workload reports it, as for a name nobody has.
    agent = span("00000000000000f3", "execute_tool x", {"gen_ai.agent.name": name})
    assert partial(export(protobuf_request([agent]))) == (0, "")
    assert UsageEvent.objects.get(event_id__endswith="00000000000000f3").workload == workload
    # A token for two workloads: a named span and an unnamed one of the same trace.
    token = make_token(workloads=[workload, ClassifiedWorkloadFactory(slug="third")])
    probe = span("00000000000000f4", "execute_tool x", {}, trace_id="e" * 32)
    plain = span("00000000000000f5", "execute_tool y", {}, trace_id="e" * 32)
    response = export(protobuf_request([probe], {"service.name": name}), token=token)
    both = export(protobuf_request([probe, plain], {"service.name": name}), token=token)
    assert partial(response)[0] == 1 and partial(both)[0] == 2
    assert "workload_not_bound" in partial(response)[1]


@pytest.mark.parametrize("content_type", [PROTOBUF, "application/json"])
def test_only_a_real_nul_refuses_a_span_not_the_text_backslash_u0000(export, content_type):
    literal = "C:\\u0000"  # a backslash, then "u0000": no NUL
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "ticket-read"}
    spans = [
        span("00000000000000b1", "execute_tool", {**tool, "path": literal}),
        span("00000000000000b2", "execute_tool", {**tool, "gen_ai.tool.call.result": literal}),
        span("00000000000000b3", "execute_tool", {**tool, "path": "a\x00b"}),
        span("00000000000000b4", "execute_tool", {**tool, "gen_ai.tool.call.id": "\x00"}),
    ]
    body = protobuf_request(spans) if content_type == PROTOBUF else json_request(spans)
    response = export(body, content_type=content_type)
    rejected, message = partial(response)
    assert rejected == 2
    assert "span 2" in message and "span 3" in message and "NUL" in message
    events = {e.event_id.split(":", 1)[1]: e for e in UsageEvent.objects.all()}
    assert events["00000000000000b1"].attributes["path"] == literal
    assert events["00000000000000b2:result"].content == literal
    assert not any(key.startswith(("00000000000000b3", "00000000000000b4")) for key in events)


def test_an_unpaired_surrogate_in_json_rejects_only_its_spans(export):
    """JavaScript's JSON.stringify writes a string cut inside an emoji as a lone \\ud83d."""
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "ticket-read"}
    body = json_request(
        [
            span("00000000000000c1", "execute_tool", tool),
            span("00000000000000c2", "execute_tool", {**tool, "gen_ai.tool.call.result": "<cut>"}),
            span("00000000000000c3", "execute_tool", tool),
        ]
    )
    other = json_request([span("00000000000000c4", "execute_tool", tool)], {"team": "<cut>"})
    body["resourceSpans"] += other["resourceSpans"]
    raw = json.dumps(body).encode().replace(b"<cut>", b"\\ud83d")
    response = export(raw, content_type="application/json")
    assert response.status_code == 200
    rejected, message = partial(response)
    assert rejected == 2
    assert f"span 1 ({TRACE}:00000000000000c2): invalid_field" in message
    assert "(\\ud83d" in message and "(gen_ai.tool.call.result)" in message
    assert "span 3" in message and "resourceSpans[1].resource" in message
    stored = {e.event_id.split(":")[1] for e in UsageEvent.objects.all()}
    assert stored == {"00000000000000c1", "00000000000000c3"}


@pytest.mark.parametrize(
    "raw",
    [b'{"resourceSpans": [], "x": "\\ud83d", "y": NaN}', b'{"resourceSpans": ["\\ud83d",]}'],
)
def test_a_surrogate_does_not_make_an_unreadable_json_export_readable(export, raw):
    response = export(raw, content_type="application/json")
    assert response.status_code == 400


def test_a_span_rejected_for_reusing_ids_does_not_link_its_trace(export, workload):
    """Its session is the client's claim for events that were not stored: the trace stays
    where its stored spans put it."""
    named = span("00000000000000d1", "chat o1", {"gen_ai.conversation.id": "conv-9"})
    export(protobuf_request([{**named, "trace_id": "ab" * 16}]))
    _, chat, _ = agent_trace()  # stored under the trace id: no span names its session yet
    export(protobuf_request([chat]))
    claim = {**chat, "start": chat["start"] + 10**6, "attributes": {**chat["attributes"]}}
    claim["attributes"]["gen_ai.conversation.id"] = "conv-9"
    assert partial(export(protobuf_request([claim])))[0] == 1
    assert UsageEvent.objects.get(event_id=f"{TRACE}:{chat['span_id']}").session.external_id == (
        TRACE
    )
    assert not SessionTrace.objects.filter(trace_id=TRACE).exists()
