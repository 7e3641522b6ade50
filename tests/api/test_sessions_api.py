"""GET /api/v1/sessions, /sessions/{id} and /sessions/{id}/events: scoping, filters, counts,
content only under full_trace logging, constant query counts."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.evaluation.services import events_evaluate
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, WorkloadFactory, tier
from tests.findings.api_rows import make_finding
from workloads.models import SessionPolicy

pytestmark = pytest.mark.django_db

LIST = "/api/v1/sessions"


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _events_url(session) -> str:
    return reverse("session-events", kwargs={"pk": session.pk})


def _full_session(workload, **kwargs):
    session = make_session(workload, request="Summarise ticket 4411", **kwargs)
    events = add_events(
        session,
        ("session_start", 0, {"content": "Summarise ticket 4411"}),
        ("reasoning_step", 1, {"content": "The ticket asks for…", "reasoning_tokens": 300}),
        ("tool_call", 2, {"tool": "crm-api", "duration_ms": 120, "input_tokens": 40}),
        ("tool_result", 3, {"tool": "crm-api", "content": "customer record"}),
        ("final_action", 4, {"content": "Drafted a reply", "output_tokens": 90}),
        ("session_end", 5),
    )
    session.final_action = "Drafted a reply"
    session.ended_at = events[-1].occurred_at
    session.save(update_fields=["final_action", "ended_at"])
    return session, events


def test_a_reviewer_lists_sessions_newest_first_with_counts(reviewer, user_api):
    workload = ClassifiedWorkloadFactory(slug="alpha")
    old, _ = _full_session(workload, started_at=timezone.now() - timedelta(hours=2))
    new = make_session(workload)
    make_finding(workload, session=old)
    body = user_api(reviewer).get(LIST).json()
    assert [row["id"] for row in body["results"]] == [new.pk, old.pk]
    rows = {row["id"]: row for row in body["results"]}
    assert (rows[old.pk]["event_count"], rows[old.pk]["finding_count"]) == (6, 1)
    assert (rows[new.pk]["event_count"], rows[new.pk]["finding_count"]) == (0, 0)
    assert (rows[old.pk]["state"], rows[new.pk]["state"]) == ("ended", "open")
    assert rows[old.pk]["workload"] == "alpha"


def test_the_session_filters_narrow_the_list(reviewer, user_api):
    alpha = ClassifiedWorkloadFactory(slug="alpha")
    beta = ClassifiedWorkloadFactory(slug="beta")
    ended, _ = _full_session(alpha, started_at=timezone.now() - timedelta(hours=3))
    open_alpha = make_session(alpha)
    open_beta = make_session(beta)
    client = user_api(reviewer)
    an_hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()
    assert sorted(_ids(client.get(LIST, {"workload": "alpha"}))) == sorted(
        [ended.pk, open_alpha.pk]
    )
    assert _ids(client.get(LIST, {"state": "ended"})) == [ended.pk]
    assert sorted(_ids(client.get(LIST, {"state": "open"}))) == sorted(
        [open_alpha.pk, open_beta.pk]
    )
    assert _ids(client.get(LIST, {"until": an_hour_ago})) == [ended.pk]
    assert _ids(client.get(LIST, {"since": an_hour_ago, "workload": "beta"})) == [open_beta.pk]


@pytest.mark.parametrize("query", ["state=closed", "since=last-week"])
def test_an_invalid_session_filter_is_a_400(query, reviewer, user_api):
    response = user_api(reviewer).get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()["error"]["fields"]


def test_a_bound_token_sees_only_its_workloads_sessions(token_api):
    alpha, beta = ClassifiedWorkloadFactory(), ClassifiedWorkloadFactory()
    mine, theirs = make_session(alpha), make_session(beta)
    client = token_api(scopes=["read"], workloads=[alpha])
    assert _ids(client.get(LIST)) == [mine.pk]
    for url in (f"{LIST}/{theirs.pk}", _events_url(theirs)):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(f"{LIST}/{mine.pk}").status_code == 200
    assert client.get(_events_url(mine)).status_code == 200


def test_a_token_without_read_and_users_without_view_findings_are_refused(
    token_api, user_api, owner, outsider
):
    workload = ClassifiedWorkloadFactory(owner=owner)
    session = make_session(workload)
    ingest = token_api(scopes=["ingest"], all_workloads=True)
    for client in (ingest, user_api(owner), user_api(outsider)):
        for url in (LIST, f"{LIST}/{session.pk}", _events_url(session)):
            response = client.get(url)
            assert response.status_code == 403, url
            assert response.json()["error"]["code"] == "forbidden"


def test_the_detail_withholds_the_request_and_action_below_full_trace(reviewer, user_api):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    assert workload.tier.logging_level == "metadata"
    session, _ = _full_session(workload)
    body = user_api(reviewer).get(f"{LIST}/{session.pk}").json()
    assert body["original_request"] is None and body["final_action"] is None
    assert body["counts"]["events"] == 6


def test_the_detail_has_the_request_the_action_times_counts_and_findings(reviewer, user_api):
    workload = ClassifiedWorkloadFactory()
    session, _ = _full_session(workload)
    first = make_finding(workload, session=session, age_minutes=2)
    second = make_finding(workload, session=session, age_minutes=1)
    make_finding(workload)  # another session's (none), not this one's
    body = user_api(reviewer).get(f"{LIST}/{session.pk}").json()
    assert body["original_request"] == "Summarise ticket 4411"
    assert body["final_action"] == "Drafted a reply"
    assert body["state"] == "ended"
    assert body["duration_seconds"] == 5.0
    assert body["findings"] == [first.pk, second.pk]
    assert body["counts"] == {
        "events": 6,
        "events_by_type": {
            "session_start": 1,
            "reasoning_step": 1,
            "tool_call": 1,
            "tool_result": 1,
            "final_action": 1,
            "session_end": 1,
        },
        "tool_calls": 1,
        "input_tokens": 40,
        "output_tokens": 90,
        "reasoning_tokens": 300,
    }


def test_an_unknown_session_is_a_404(reviewer, user_api):
    for url in (f"{LIST}/999999", "/api/v1/sessions/999999/events"):
        response = user_api(reviewer).get(url)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_events_come_in_time_order_and_paginate(reviewer, user_api):
    session, events = _full_session(ClassifiedWorkloadFactory())
    client = user_api(reviewer)
    first = client.get(_events_url(session), {"page_size": 4}).json()
    second = client.get(_events_url(session), {"page_size": 4, "page": 2}).json()
    assert first["count"] == 6
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert ids == [e.id for e in events]
    assert [row["type"] for row in first["results"]][:3] == [
        "session_start",
        "reasoning_step",
        "tool_call",
    ]
    call = first["results"][2]
    assert (call["tool"], call["duration_ms"], call["input_tokens"]) == ("crm-api", 120, 40)


def _contents(client, session) -> list:
    return [row["content"] for row in client.get(_events_url(session)).json()["results"]]


def test_event_content_shows_only_under_full_trace_logging(reviewer, user_api):
    client = user_api(reviewer)
    traced, _ = _full_session(ClassifiedWorkloadFactory(tier=tier("internal-act")))
    assert tier("internal-act").logging_level == "full_trace"
    assert _contents(client, traced)[:2] == ["Summarise ticket 4411", "The ticket asks for…"]
    metadata, _ = _full_session(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    assert tier("internal-read").logging_level == "metadata"
    assert set(_contents(client, metadata)) == {None}


def test_a_workload_override_to_metadata_hides_content_its_tier_would_show(reviewer, user_api):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    SessionPolicy.objects.filter(workload=workload).update(logging_level="metadata")
    session, _ = _full_session(workload)
    assert set(_contents(user_api(reviewer), session)) == {None}


def test_an_unclassified_workload_shows_no_content(reviewer, user_api):
    session, _ = _full_session(WorkloadFactory())
    assert set(_contents(user_api(reviewer), session)) == {None}


def test_the_sessions_page_filters_by_state_like_the_api(client, reviewer, user_api):
    workload = ClassifiedWorkloadFactory()
    ended, _ = _full_session(workload)
    make_session(workload)
    client.force_login(reviewer)
    page = client.get(reverse("usage:sessions"), {"state": "ended"})
    assert [s.pk for s in page.context["page"]] == [ended.pk]
    assert _ids(user_api(reviewer).get(LIST, {"state": "ended"})) == [ended.pk]


# --- query counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["user", "bound token"])
@pytest.mark.parametrize("query", ["", "?state=ended&since=2000-01-01T00:00:00Z"])
def test_the_session_list_takes_constant_queries(
    caller, query, reviewer, user_api, token_api, django_assert_max_num_queries
):
    workloads = [ClassifiedWorkloadFactory() for _ in range(3)]
    client = user_api(reviewer) if caller == "user" else token_api(workloads=workloads)

    def grow(n):
        for i in range(n):
            session, _ = _full_session(workloads[i % 3])
            make_finding(session.workload, session=session)

    grow(5)
    sep = "&" if query else "?"
    with CaptureQueriesContext(connection) as few:
        assert len(_ids(client.get(f"{LIST}{query}{sep}page_size=100"))) == 5
    grow(45)
    with django_assert_max_num_queries(len(few)):
        assert len(_ids(client.get(f"{LIST}{query}{sep}page_size=100"))) == 50


@pytest.mark.parametrize("level", ["full_trace", "metadata"])
def test_the_event_list_takes_constant_queries(
    level, reviewer, user_api, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory()
    SessionPolicy.objects.filter(workload=workload).update(logging_level=level)
    session = make_session(workload)
    client = user_api(reviewer)
    add_events(session, *[("reasoning_step", i, {"content": "x"}) for i in range(5)])
    with CaptureQueriesContext(connection) as few:
        client.get(_events_url(session), {"page_size": 100})
    add_events(session, *[("tool_call", 10 + i, {"tool": "crm-api"}) for i in range(45)])
    with django_assert_max_num_queries(len(few)):
        body = client.get(_events_url(session), {"page_size": 100}).json()
    assert len(body["results"]) == 50


def test_the_session_detail_takes_constant_queries(
    reviewer, user_api, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory()
    session, _ = _full_session(workload)
    client = user_api(reviewer)
    with CaptureQueriesContext(connection) as few:
        assert client.get(f"{LIST}/{session.pk}").status_code == 200
    add_events(session, *[("tool_call", 10 + i, {"tool": "crm-api"}) for i in range(40)])
    for _ in range(10):
        make_finding(workload, session=session)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get(f"{LIST}/{session.pk}").json()["findings"]) == 10


def test_the_events_api_says_which_events_are_evaluated(reviewer, user_api):
    session = make_session(ClassifiedWorkloadFactory())
    events = add_events(session, ("session_start", 0), ("session_end", 1))
    url = _events_url(session)
    before = user_api(reviewer).get(url).json()["results"]
    assert [row["evaluated"] for row in before] == [False, False]
    events_evaluate(**id_range(events))
    after = user_api(reviewer).get(url).json()["results"]
    assert [row["evaluated"] for row in after] == [True, True]
