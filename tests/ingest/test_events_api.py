"""POST /api/v1/events: storing, idempotency, per-item results, limits, auth, rate, handoff."""

import base64
import gzip
import hashlib
import json
import logging

import msgspec
import pytest
from celery import Celery
from django.core.cache import cache
from django.db import OperationalError

from governance.ingest import handoff, views
from governance.ingest.native import MAX_EVENTS
from governance.tokens import service_token_revoke
from tests.ingest.conftest import event
from workloads.models import PendingEvaluation, Session, UsageEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_history():
    cache.clear()


def test_it_stores_a_batch_and_builds_the_session(post_events, workload):
    events = [
        event(0, "session_start", content="Summarise ticket 1234"),
        event(1, "reasoning_step", content="Read the ticket first", reasoning_tokens=120),
        event(2, "tool_call", tool_call_id="c1", arguments={"ticket": 1234}, duration_ms=40),
        event(3, "final_action", content="Drafted a reply"),
        event(4, "session_end"),
    ]
    response = post_events(events)
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "rejected": [], "duplicates": []}
    session = Session.objects.get(workload=workload, external_id="run-1")
    assert session.original_request == "Summarise ticket 1234"
    assert session.final_action == "Drafted a reply"
    assert session.source == "native"
    assert session.started_at.isoformat().startswith(events[0]["occurred_at"][:19])
    assert session.ended_at > session.started_at
    assert session.last_event_at == session.ended_at
    stored = {e.event_id: e for e in UsageEvent.objects.filter(session=session)}
    assert set(stored) == {f"evt-{n}" for n in range(5)}
    call = stored["evt-2"]
    assert (call.tool, call.tool_call_id, call.duration_ms) == ("ticket-read", "c1", 40)
    assert call.arguments_hash == hashlib.sha256(b'{"ticket":1234}').hexdigest()
    assert stored["evt-1"].reasoning_tokens == 120
    pending = set(PendingEvaluation.objects.values_list("event_id", flat=True))
    assert pending == {e.id for e in stored.values()}


def test_a_late_older_batch_does_not_overwrite_the_newer_request_or_action(post_events, workload):
    post_events(
        [
            event(5, "session_start", event_id="late-start", content="Second thoughts"),
            event(9, "final_action", event_id="new-final", content="Sent the refund"),
        ]
    )
    # A retry of an earlier batch arrives afterwards: its action is older, its start earlier.
    post_events(
        [
            event(0, "session_start", event_id="early-start", content="Refund order 77"),
            event(3, "final_action", event_id="old-final", content="Drafted a refund"),
        ]
    )
    session = Session.objects.get(workload=workload, external_id="run-1")
    assert session.final_action == "Sent the refund"
    assert session.original_request == "Refund order 77"
    post_events([event(12, "final_action", event_id="newest-final", content="Closed the ticket")])
    session.refresh_from_db()
    assert session.final_action == "Closed the ticket"
    assert session.original_request == "Refund order 77"


def test_it_hashes_arguments_canonically(post_events):
    post_events(
        [
            event(1, "tool_call", arguments={"b": 1, "a": [1, 2]}),
            event(2, "tool_call", arguments='{"a": [1, 2], "b": 1}'),
        ]
    )
    hashes = set(UsageEvent.objects.values_list("arguments_hash", flat=True))
    assert len(hashes) == 1


def test_it_stores_the_same_event_once_and_answers_a_replay_alike(post_events):
    """A retry is accepted again, and told which events were stored already."""
    batch = [event(n) for n in range(3)] + [event(9, "nonsense")]
    first = post_events(batch)
    second = post_events(batch)
    assert first.status_code == second.status_code == 200
    assert first.json()["rejected"] == second.json()["rejected"]
    assert first.json()["accepted"] == second.json()["accepted"] == 3
    assert first.json()["duplicates"] == []
    assert second.json()["duplicates"] == [{"index": n, "event_id": f"evt-{n}"} for n in range(3)]
    assert UsageEvent.objects.count() == 3


def test_an_event_id_stored_for_another_event_is_rejected_not_reported_stored(
    post_events, workload
):
    """The black-box case: ids reused for another session's tool calls were answered as
    accepted while nothing was stored, so those calls were never evaluated."""
    post_events([event(1, session="A"), event(2, session="A")])
    response = post_events(
        [
            event(1, "tool_call", session="B", tool="web-search"),
            event(2, "tool_call", session="B", tool="code-exec"),
        ]
    )
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (0, [])
    assert [(r["index"], r["event_id"], r["code"], r["field"]) for r in body["rejected"]] == [
        (0, "evt-1", "event_id_reused", "event_id"),
        (1, "evt-2", "event_id_reused", "event_id"),
    ]
    assert "its session, type and tool differ" in body["rejected"][0]["message"]
    assert not Session.objects.filter(external_id="B").exists()
    assert set(UsageEvent.objects.values_list("session__external_id", "tool")) == {("A", "")}


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"session": "run-2"}, "session"),
        ({"type_": "tool_result"}, "type"),
        ({"occurred_at": "2025-03-01T12:00:01.000001Z"}, "occurred_at"),
        ({"tool": "web-search"}, "tool"),
    ],
)
def test_an_event_is_its_session_type_time_and_tool(post_events, change, differs):
    post_events([event(1, "tool_call", occurred_at="2025-03-01T12:00:01Z")])
    changed = {"type_": "tool_call", "occurred_at": "2025-03-01T12:00:01Z", **change}
    response = post_events([event(1, **changed)]).json()
    [rejected] = response["rejected"]
    assert (rejected["code"], response["accepted"]) == ("event_id_reused", 0)
    assert f"(its {differs} differs)" in rejected["message"]


def test_a_retry_may_differ_in_what_it_says_about_the_event(post_events):
    """Content, counts, arguments and attributes do not make another event: the retry is a
    duplicate, and the copy stored first stays."""
    post_events([event(1, "tool_call", content="first", arguments={"q": 1})])
    retry = event(
        1,
        "tool_call",
        occurred_at="2025-03-01T13:00:01+01:00",  # the same instant, written otherwise
        content="second",
        arguments={"q": 2},
        input_tokens=5,
        attributes={"attempt": 2},
    )
    response = post_events([retry]).json()
    assert response == {
        "accepted": 1,
        "rejected": [],
        "duplicates": [{"index": 0, "event_id": "evt-1"}],
    }
    assert UsageEvent.objects.get().content == "first"


def test_duplicates_and_reused_ids_are_reported_at_their_items(post_events):
    post_events([event(1), event(2)])
    response = post_events(
        [
            event(9, "nonsense"),  # rejected before storing
            event(2),  # a duplicate
            event(3),  # new
            event(1, session="other"),  # a reused id
            event(4, occurred_at="yesterday"),
            event(5),
        ]
    ).json()
    assert response["accepted"] == 3
    assert [(r["index"], r["code"]) for r in response["rejected"]] == [
        (0, "unknown_type"),
        (3, "event_id_reused"),
        (4, "bad_timestamp"),
    ]
    assert response["duplicates"] == [{"index": 1, "event_id": "evt-2"}]
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {
        f"evt-{n}" for n in (1, 2, 3, 5)
    }


def test_it_refuses_an_event_id_repeated_within_a_batch_by_name(post_events):
    """Only one copy could be stored: the later one is refused, not counted and dropped,
    and it does not shape the session."""
    response = post_events(
        [
            event(1, content="stored"),
            event(2),
            event(1, "session_start", content="never stored"),
        ]
    )
    assert response.json() == {
        "accepted": 2,
        "rejected": [
            {
                "index": 2,
                "event_id": "evt-1",
                "code": "duplicate_event_id",
                "field": "event_id",
                "message": "The event id is used by item 0 of this batch.",
            }
        ],
        "duplicates": [],
    }
    assert UsageEvent.objects.get(event_id="evt-1").content == "stored"
    assert Session.objects.get().original_request == ""


def test_a_replayed_event_id_does_not_reshape_the_session(post_events):
    """A replay is accepted (idempotent), but only the stored copy describes the session."""
    post_events([event(0, "session_start", content="The real request")])
    response = post_events(
        [event(0, "session_start", content="Rewritten"), event(1, "final_action", content="Done")]
    )
    assert response.json() == {
        "accepted": 2,
        "rejected": [],
        "duplicates": [{"index": 0, "event_id": "evt-0"}],
    }
    session = Session.objects.get()
    assert session.original_request == "The real request"
    assert session.final_action == "Done"
    assert UsageEvent.objects.count() == 2


def test_it_enqueues_one_evaluation_per_stored_batch_after_commit(
    post_events, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post_events([event(n) for n in range(5)])
    ids = sorted(UsageEvent.objects.values_list("id", flat=True))
    assert published == [("mandate.evaluate_events", {"min_id": ids[0], "max_id": ids[-1]})]
    with django_capture_on_commit_callbacks(execute=True):
        post_events([event(n) for n in range(5)])  # a replay stores nothing new
    assert len(published) == 1


def test_it_does_not_enqueue_before_commit(post_events, published):
    post_events([event(1)])  # the test transaction never commits
    assert published == []


@pytest.mark.parametrize(
    ("item", "code", "field"),
    [
        # A bound token is not told whether a slug exists (see the all-workloads test below).
        (event(1, workload="no-such-workload"), "workload_not_bound", "workload"),
        (event(1, workload="nul\u0000"), "workload_not_bound", "workload"),
        (event(1, occurred_at="2025-03-01T12:00:00"), "bad_timestamp", "occurred_at"),
        (event(1, occurred_at="yesterday"), "bad_timestamp", "occurred_at"),
        (event(1, occurred_at="2999-01-01T00:00:00Z"), "bad_timestamp", "occurred_at"),
        (event(1, occurred_at="1999-01-01T00:00:00Z"), "bad_timestamp", "occurred_at"),
        (event(1, "launch_rockets"), "unknown_type", "type"),
        ({k: v for k, v in event(1).items() if k != "session_id"}, "missing_field", "session_id"),
        (event(1, "tool_call", tool=""), "missing_field", "tool"),
        # Refused, not dropped: a misspelt count would otherwise be stored as 0.
        (event(1, reasoning_token=900), "unknown_field", "reasoning_token"),
        (event(1, input_tokens=-1), "invalid_field", "input_tokens"),
        (event(1, reasoning_tokens=2**40), "invalid_field", "reasoning_tokens"),
        (event(1, attributes=[1, 2]), "invalid_field", "attributes"),
        (event(1, event_id="x" * 201), "invalid_field", "event_id"),
        (event(1, content="nul\u0000byte"), "invalid_field", ""),
        (event(1, attributes={"k": "nul\u0000"}), "invalid_field", ""),
        ("not an object", "invalid_event", ""),
    ],
)
def test_it_rejects_a_bad_item_with_a_reason_and_keeps_the_rest(post_events, item, code, field):
    response = post_events([event(100), item, event(101)])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert rejected["code"] == code
    assert rejected.get("field", "") == field
    assert rejected["message"]
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {"evt-100", "evt-101"}


def test_the_text_backslash_u0000_is_stored_and_only_a_real_nul_is_refused(post_events):
    """`\\u0000` in a JSON string is a backslash and "u0000", not a NUL: kept as sent."""
    literal = "C:\\u0000 and \\\\u0000"  # no NUL: escaped backslashes before "u0000"
    response = post_events(
        [
            event(1, content=literal, session=literal, tool_call_id=literal),
            event(2, attributes={"path": literal, literal: [literal]}),
            event(3, attributes={"k": "\\\u0000"}),  # a backslash, then a real NUL
            event(4, attributes={literal: "\u0000"}),
        ]
    )
    assert response.json()["accepted"] == 2
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [
        (2, "invalid_field"),
        (3, "invalid_field"),
    ]
    stored = {e.event_id: e for e in UsageEvent.objects.all()}
    assert (stored["evt-1"].content, stored["evt-1"].tool_call_id) == (literal, literal)
    assert stored["evt-1"].session.external_id == literal
    assert stored["evt-2"].attributes == {"path": literal, literal: [literal]}


def _with_lone_surrogates(events: list[dict]) -> bytes:
    """The batch as JavaScript's JSON.stringify writes a string cut inside an emoji: every
    "<cut>" becomes the unpaired escape \\ud83d, which msgspec refuses for the whole body."""
    return msgspec.json.encode({"events": events}).replace(b"<cut>", b"\\ud83d")


def test_an_unpaired_surrogate_rejects_only_its_event(post_events):
    exact = {"f": 1.50, "big": 2**53 + 1, "e": 1e-7, "pair": "\U0001f600"}
    response = post_events(
        None,
        raw=_with_lone_surrogates(
            [
                event(0, attributes=exact),
                event(1, content="truncated emoji <cut>"),
                event(2, attributes={"nested": [{"k": "<cut>"}]}),
                event(3, "tool_call", arguments={"<cut>": 1}),
                event(4, event_id="evt-<cut>"),
                event(5, content="\U0001f600 whole"),
            ]
        ),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["event_id"], r["code"], r["field"]) for r in body["rejected"]] == [
        (1, "evt-1", "invalid_field", "content"),
        (2, "evt-2", "invalid_field", "attributes"),
        (3, "evt-3", "invalid_field", "arguments"),
        (4, "evt-\\ud83d", "invalid_field", "event_id"),
    ]
    assert "unpaired UTF-16 surrogate (\\ud83d" in body["rejected"][0]["message"]
    assert "`$.attributes.nested[0].k`" in body["rejected"][1]["message"]
    stored = {e.event_id: e for e in UsageEvent.objects.all()}
    assert set(stored) == {"evt-0", "evt-5"}
    assert stored["evt-0"].attributes == exact  # read again, the numbers are kept as sent
    assert stored["evt-5"].content == "\U0001f600 whole"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"events": [], "x": "\\ud83d"}',
        b'{"events": [{"content": "\\ud83d"}], "\\ud83d": 1}',
        b'{"events": [{"content": "\\ud83d", "n": NaN}]}',
        b'{"events": [{"content": "\\ud83d"}, 1,]}',
        b'{"events": {"content": "\\ud83d"}}',
    ],
)
def test_a_surrogate_does_not_make_an_unreadable_body_readable(post_events, raw):
    response = post_events(None, raw=raw)
    assert response.status_code == 400
    assert UsageEvent.objects.count() == 0


def test_a_batch_with_fields_beside_events_is_refused_whole(post_events):
    response = post_events(None, raw=b'{"events": [], "source": "gateway"}')
    assert response.status_code == 400
    assert "source" in response.json()["error"]["message"]


def test_it_rejects_events_for_workloads_the_token_is_not_bound_to(post_events, other_workload):
    response = post_events([event(1), event(2, workload=other_workload.slug)])
    [rejected] = response.json()["rejected"]
    assert (rejected["event_id"], rejected["code"]) == ("evt-2", "workload_not_bound")
    assert not UsageEvent.objects.filter(workload=other_workload).exists()


def test_an_unbound_token_reports_for_every_workload(post_events, make_token, other_workload):
    token = make_token(all_workloads=True)
    response = post_events([event(1), event(2, workload=other_workload.slug)], token=token)
    assert response.json() == {"accepted": 2, "rejected": [], "duplicates": []}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"events": 3}',
        b'{"evnts": []}',
        b'{"events": [1,',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,  # deeper than Python's recursion limit
        b'{"events": [{"attributes": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
    ],
)
def test_it_answers_400_to_a_body_that_is_not_a_batch(post_events, raw):
    response = post_events(None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_it_answers_413_to_too_many_events(post_events):
    response = post_events([event(n) for n in range(MAX_EVENTS + 1)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert UsageEvent.objects.count() == 0


def test_a_content_length_of_non_ascii_digits_is_a_400_not_a_500(client, secret):
    response = client.post(
        "/api/v1/events",
        data=msgspec.json.encode({"events": [event(1)]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
        CONTENT_LENGTH="\u00b2",  # "²" passes str.isdigit(), not int()
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_it_answers_413_to_too_many_bytes(post_events):
    response = post_events([event(1, content="x" * (views.MAX_BYTES + 10))])
    assert response.status_code == 413


def test_it_answers_413_to_a_gzip_bomb(post_events):
    body = gzip.compress(b'{"events": [' + b" " * (views.MAX_BYTES + 10) + b"]}")
    response = post_events(None, raw=body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_it_accepts_gzip(post_events):
    body = gzip.compress(msgspec.json.encode({"events": [event(1)]}))
    response = post_events(None, raw=body, **{"Content-Encoding": "gzip"})
    assert response.json() == {"accepted": 1, "rejected": [], "duplicates": []}


def test_it_answers_401_without_a_valid_token(client, post_events):
    assert client.post("/api/v1/events", {}, content_type="application/json").status_code == 401
    response = post_events([event(1)], token="mnd_not-a-real-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_answers_401_to_a_revoked_token(post_events, secret, admin_user):
    from governance.models import ServiceToken

    service_token_revoke(token=ServiceToken.objects.get(), by=admin_user)
    assert post_events([event(1)]).status_code == 401


def test_it_answers_403_to_a_token_without_the_ingest_scope(post_events, make_token, workload):
    token = make_token(scopes=("decide", "read"), workloads=[workload])
    response = post_events([event(1)], token=token)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_it_answers_429_with_retry_after_over_the_rate(post_events, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ingest": "2/min"},
    }
    assert post_events([event(1)]).status_code == 200
    assert post_events([event(2)]).status_code == 200
    response = post_events([event(3)])
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "throttled"
    assert not UsageEvent.objects.filter(event_id="evt-3").exists()


def test_it_answers_415_to_a_body_that_is_not_json(post_events):
    response = post_events(None, raw=b"a=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_it_answers_405_to_get(client, secret):
    response = client.get("/api/v1/events", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 405


def test_it_answers_503_with_retry_after_when_the_database_is_unavailable(post_events, monkeypatch):
    def unavailable(**kwargs):
        raise OperationalError("connection pool exhausted")

    monkeypatch.setattr(views, "usage_events_store", unavailable)
    response = post_events([event(1)])
    assert response.status_code == 503
    assert response["Retry-After"]


def test_it_still_answers_2xx_when_the_broker_is_down(
    post_events, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    down = Celery("broker-down", set_as_current=False)  # shared tasks stay on ours
    down.config_from_object("django.conf:settings", namespace="CELERY")
    down.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    # Celery reads CELERY_BROKER_URL from the environment before its own config.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    down.conf.broker_transport_options = {"socket_connect_timeout": 1}
    monkeypatch.setattr(handoff, "celery_app", down)
    with (
        caplog.at_level(logging.WARNING, logger="governance.ingest.handoff"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_events([event(1), event(2)])
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert UsageEvent.objects.count() == 2
    assert "left for the sweeper" in caplog.text


def test_a_revoked_token_stops_working_once_its_cache_entry_expires(
    post_events, admin_user, settings
):
    from governance.models import ServiceToken

    settings.INGEST_CACHE_SECONDS = 0
    assert post_events([event(1)]).status_code == 200
    service_token_revoke(token=ServiceToken.objects.get(), by=admin_user)
    assert post_events([event(2)]).status_code == 401


@pytest.mark.skipif(
    "postgresql" not in __import__("django.conf").conf.settings.DATABASES["default"]["ENGINE"],
    reason="the COPY path runs on PostgreSQL only",
)
def test_the_query_count_does_not_grow_with_the_batch(post_events, django_assert_max_num_queries):
    post_events([event(0)])  # warm the token and workload caches
    with django_assert_max_num_queries(6):
        post_events([event(n) for n in range(1, 3)])
    with django_assert_max_num_queries(6):
        post_events([event(n, session=f"s-{n % 40}") for n in range(3, MAX_EVENTS)])
    with django_assert_max_num_queries(7):  # one more to compare ids stored before
        post_events([event(n, session=f"s-{n % 40}") for n in range(1, MAX_EVENTS)])


def test_the_evaluation_message_reaches_a_real_broker(
    post_events, monkeypatch, django_capture_on_commit_callbacks
):
    import uuid

    import redis
    from django.conf import settings

    # The configured Redis broker, else a local one; a fresh queue keeps workers away.
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        url = "redis://127.0.0.1:6379/13"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    queue = f"ingest-test-{uuid.uuid4().hex}"  # a queue no worker consumes
    app = Celery("ingest-test", broker=url, set_as_current=False)
    app.conf.task_default_queue = queue
    monkeypatch.setattr(handoff, "celery_app", app)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            post_events([event(n) for n in range(3)])
        [raw] = client.lrange(queue, 0, -1)
    finally:
        client.delete(queue)
    message = json.loads(raw)
    ids = sorted(UsageEvent.objects.values_list("id", flat=True))
    assert message["headers"]["task"] == "mandate.evaluate_events"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([], {"min_id": ids[0], "max_id": ids[-1]})


def test_a_foreign_key_failure_answers_503_and_forgets_the_cache(post_events, monkeypatch):
    """A workload deleted while still in the slug cache fails the commit's FK check."""
    from django.db import IntegrityError

    from governance.ingest import access

    assert post_events([event(1)]).status_code == 200
    assert access._workloads

    def fk_violation(**kwargs):
        raise IntegrityError("violates foreign key constraint")

    monkeypatch.setattr(views, "usage_events_store", fk_violation)
    response = post_events([event(2)])
    assert (response.status_code, response["Retry-After"]) == (503, "1")
    assert not access._workloads


def test_it_still_stores_when_the_rate_cache_is_down(post_events, monkeypatch):
    from governance.ingest.access import IngestThrottle

    def cache_down(self, request, view):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(IngestThrottle, "allow_request", cache_down)
    assert post_events([event(1)]).json()["accepted"] == 1


def test_a_value_the_database_refuses_is_a_400_not_a_500(post_events, monkeypatch):
    from django.db import DataError

    def refuse(**kwargs):
        raise DataError("value out of range")

    monkeypatch.setattr(views, "usage_events_store", refuse)
    assert post_events([event(1)]).status_code == 400


def test_a_content_length_of_thousands_of_digits_is_a_413_not_a_500(client, secret):
    response = client.post(
        "/api/v1/events",
        data=msgspec.json.encode({"events": [event(1)]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
        CONTENT_LENGTH="9" * 5000,  # past Python's 4,300-digit limit for int()
    )
    assert response.status_code == 413
    assert UsageEvent.objects.count() == 0


def test_only_a_token_for_every_workload_learns_that_a_slug_does_not_exist(
    post_events, make_token, other_workload
):
    bound = post_events([event(1, workload="no-such-workload")]).json()["rejected"][0]
    elsewhere = post_events([event(2, workload=other_workload.slug)]).json()["rejected"][0]
    assert (bound["code"], bound["message"].replace("'no-such-workload'", "W")) == (
        elsewhere["code"],
        elsewhere["message"].replace(repr(other_workload.slug), "W"),
    )
    everywhere = make_token(all_workloads=True)
    unknown = post_events([event(3, workload="no-such-workload")], token=everywhere).json()
    assert unknown["rejected"][0]["code"] == "unknown_workload"


def test_a_surrogate_deep_in_nested_attributes_is_an_answer_not_a_500(post_events):
    """The lenient decoder reads nesting deeper than Python recurses: the search for the
    surrogate must not be a recursive walk."""
    deep = "<cut>"
    for _ in range(1200):
        deep = [deep]
    response = post_events(
        None, raw=_with_lone_surrogates([event(0), event(1, attributes={"a": deep})])
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1 and body["rejected"][0]["index"] == 1
