"""Whatever a client sends, ingestion answers 2xx or 4xx, never 5xx."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest.conftest import event
from tests.ingest.otlp_builders import agent_trace, json_request

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    [
        "",
        "\x00",
        "\\u0000",
        "2025-03-01T12:00:00Z",
        "2025-03-01T12:00:00+14:00",
        "tool_call",
        "é" * 300,
        "cut \ud83d",  # unpaired surrogates: json.dumps writes them as escapes, as JS does
        "\udfff",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    "event_id",
    "type",
    "session_id",
    "workload",
    "occurred_at",
    "tool",
    "tool_call_id",
    "arguments",
    "content",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "duration_ms",
    "attributes",
]
mutated_events = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from([event(1), event(2, "tool_call"), event(3, "session_start", content="x")]),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
)


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ingest": "1000000/min"},
    }


@FUZZ
@given(items=st.lists(mutated_events | json_values, max_size=5))
def test_native_items_never_cause_a_5xx(post_events, items):
    response = post_events(None, raw=json.dumps({"events": items}).encode())
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] + len(body["rejected"]) == len(items)


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_native_bodies_never_cause_a_5xx(post_events, body):
    assert post_events(None, raw=body).status_code in (200, 400)


@FUZZ
@given(body=st.binary(max_size=300), content_type=st.sampled_from(["protobuf", "json"]))
def test_otlp_bodies_never_cause_a_5xx(client, secret, body, content_type):
    response = client.post(
        "/v1/traces",
        data=body,
        content_type=f"application/x-{content_type}"
        if content_type == "protobuf"
        else "application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    # (the test client drops Content-Type from an empty body: 415)
    assert response.status_code in (200, 400, 415)


@FUZZ
@given(values=st.lists(json_values, min_size=1, max_size=6), where=st.data())
def test_otlp_attribute_values_never_cause_a_5xx(client, secret, values, where):
    body = json_request(agent_trace())
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for value in values:
        span = where.draw(st.sampled_from(spans))
        attributes = span.get("attributes")
        pairs = (
            [a for a in attributes if isinstance(a, dict)] if isinstance(attributes, list) else []
        )
        if pairs and where.draw(st.booleans()):
            attribute = where.draw(st.sampled_from(pairs))
            kind = where.draw(
                st.sampled_from(["stringValue", "intValue", "arrayValue", "kvlistValue", "x"])
            )
            attribute["value"] = {kind: value}
        else:
            span[where.draw(st.sampled_from(sorted(span)))] = value
    response = client.post(
        "/v1/traces",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code in (200, 400), response.content
