"""The sessions list and a session's timeline stay cheap on long histories (bench/pages.py):
finding counts per row of the page only, and long runs paged."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.findings import selectors
from governance.models import Finding
from tests.evaluation.rows import add_events, make_session
from tests.factories import ClassifiedWorkloadFactory, tier
from tests.findings.test_views import _sessions_with_findings

pytestmark = pytest.mark.django_db

FULL_TRACE = "internal-act"  # the seeded tier whose logging level is full_trace
METADATA = "internal-read"


def test_the_sessions_list_counts_each_sessions_findings(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    (flagged,) = _sessions_with_findings(1, workload)
    quiet = make_session(workload)
    add_events(quiet, ("session_start", 0))
    expected = Finding.objects.filter(session=flagged).count()
    assert expected >= 1
    client.force_login(reviewer)
    html = client.get(reverse("usage:sessions")).content.decode()
    row_of = {s: html.split(f">{s.external_id}</a>")[1].split("</tr>")[0] for s in (flagged, quiet)}
    assert f'<span class="badge high">{expected}</span>' in row_of[flagged]
    assert row_of[quiet].rstrip().endswith("<td>0</td>")


def test_a_long_timeline_is_shown_a_page_at_a_time(client, reviewer, monkeypatch):
    monkeypatch.setattr(selectors, "TIMELINE_PAGE", 3)
    session = make_session(ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)))
    add_events(session, *[("reasoning_step", i, {"content": f"thought-{i}"}) for i in range(5)])
    client.force_login(reviewer)
    url = reverse("usage:timeline", args=[session.pk])

    first = client.get(url).content.decode()
    assert [f"thought-{i}" in first for i in range(5)] == [True, True, True, False, False]
    assert 'href="?page=2"' in first and "Earlier events" not in first

    second = client.get(url, {"page": 2}).content.decode()
    assert [f"thought-{i}" in second for i in range(5)] == [False, False, False, True, True]
    assert 'href="?page=1"' in second and "Later events" not in second
    assert "Events 4\N{EN DASH}5" in second


def test_a_short_timeline_has_no_pager_and_a_bad_page_shows_the_first(client, reviewer):
    session = make_session(ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)))
    add_events(session, ("session_start", 0, {"content": "hello"}))
    client.force_login(reviewer)
    url = reverse("usage:timeline", args=[session.pk])
    page = client.get(url, {"page": "nope"}).content.decode()
    assert "hello" in page
    assert 'aria-label="Events"' not in page


@pytest.mark.parametrize("page", ["9999999999999999999999999", "1000001", "3"])
def test_a_timeline_page_past_the_end_is_a_404_not_a_500(client, reviewer, page):
    session = make_session(ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)))
    add_events(session, ("session_start", 0, {"content": "hello"}))
    client.force_login(reviewer)
    response = client.get(reverse("usage:timeline", args=[session.pk]), {"page": page})
    assert response.status_code == 404


@pytest.mark.parametrize("page", ["\N{SUPERSCRIPT TWO}", "-4", "0", ""])
def test_a_timeline_page_that_is_not_a_plain_number_shows_the_first(client, reviewer, page):
    session = make_session(ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)))
    add_events(session, ("session_start", 0, {"content": "hello"}))
    client.force_login(reviewer)
    response = client.get(reverse("usage:timeline", args=[session.pk]), {"page": page})
    assert response.status_code == 200 and response.context["page"] == 1
    assert "hello" in response.content.decode()


def test_a_metadata_level_timeline_withholds_event_content_as_the_api_does(client, reviewer):
    assert tier(METADATA).logging_level == "metadata"
    session = make_session(ClassifiedWorkloadFactory(tier=tier(METADATA)))
    add_events(
        session,
        ("reasoning_step", 0, {"content": "secret-reasoning"}),
        ("tool_call", 1, {"tool": "crm-api"}),
        ("tool_result", 2, {"content": "secret-result"}),
    )
    client.force_login(reviewer)
    html = client.get(reverse("usage:timeline", args=[session.pk])).content.decode()
    assert "secret-reasoning" not in html and "secret-result" not in html
    # One note per event that had text (the tool call had none), one for the request.
    assert html.count("Not shown: this workload&#x27;s logging level is metadata only.") == 3


def test_a_metadata_level_session_shows_neither_its_request_nor_its_final_action(client, reviewer):
    hidden = make_session(ClassifiedWorkloadFactory(tier=tier(METADATA)), request="secret-ask")
    shown = make_session(ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)), request="plain-ask")
    for session, action in ((hidden, "secret-act"), (shown, "plain-act")):
        session.final_action = action
        session.save(update_fields=["final_action"])
    client.force_login(reviewer)
    timeline = client.get(reverse("usage:timeline", args=[hidden.pk])).content.decode()
    assert "secret-ask" not in timeline and "secret-act" not in timeline
    assert "Final action" in timeline  # that there was one is metadata
    listing = client.get(reverse("usage:sessions")).content.decode()
    assert "secret-ask" not in listing and "plain-ask" in listing
    full = client.get(reverse("usage:timeline", args=[shown.pk])).content.decode()
    assert "plain-ask" in full and "plain-act" in full


def test_a_workload_policy_override_to_full_trace_shows_the_content(client, reviewer):
    from workloads.models import SessionPolicy

    workload = ClassifiedWorkloadFactory(tier=tier(METADATA))
    SessionPolicy.objects.filter(workload=workload).update(logging_level="full_trace")
    session = make_session(workload)
    add_events(session, ("reasoning_step", 0, {"content": "visible-reasoning"}))
    client.force_login(reviewer)
    html = client.get(reverse("usage:timeline", args=[session.pk])).content.decode()
    assert "visible-reasoning" in html and "Not shown:" not in html


def test_the_timeline_runs_the_same_queries_for_a_long_run_as_for_a_short_one(
    client, reviewer, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from governance.models import Decision

    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    short, long = make_session(workload), make_session(workload)
    add_events(short, ("session_start", 0))
    add_events(long, *[("tool_call", i, {"tool": "crm-api"}) for i in range(60)])
    Decision.objects.bulk_create(
        Decision(
            workload=workload.slug,
            tool="crm-api",
            session=long.external_id,
            decision="allow",
            reason_code="allowed",
            policy_version=1,
            latency_us=5,
        )
        for _ in range(30)
    )
    client.force_login(reviewer)
    client.get(reverse("usage:timeline", args=[short.pk]))  # warm the session and permissions
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("usage:timeline", args=[short.pk]))
    with django_assert_num_queries(len(few)):
        page = client.get(reverse("usage:timeline", args=[long.pk]))
    assert len(page.context["rows"]) == 60 and len(page.context["gateway"]["decisions"]) == 20


def test_the_sessions_list_filters_by_start_and_keeps_every_filter_when_paging(client, reviewer):
    workload = ClassifiedWorkloadFactory(slug="paged")
    start = timezone.now() - timedelta(hours=1)
    for i in range(30):
        make_session(workload, started_at=start + timedelta(seconds=i))
    make_session(workload, started_at=start - timedelta(days=2))  # before the filter
    client.force_login(reviewer)
    since = (start - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    first = client.get(reverse("usage:sessions"), {"workload": "paged", "since": since})
    html = first.content.decode()
    assert f'name="since" value="{since}"' in html
    assert first.context["page"].paginator.count == 30
    link = re.search(r'href="\?([^"]*page=2)"', html).group(1).replace("&amp;", "&")
    second = client.get(reverse("usage:sessions") + "?" + link)
    assert second.context["page"].paginator.count == 30 and second.context["page"].number == 2


def test_a_drift_findings_quoted_targets_follow_the_logging_level(client, reviewer):
    """What the final action named (URLs, paths) is session content: counted, not shown,
    below full trace, on the finding page and in the API."""
    from rest_framework.test import APIClient

    from tests.findings.api_rows import make_finding

    details = {"signals": ["targets"], "targets_outside_request": ["https://exfil.example/x"]}
    hidden = make_finding(
        ClassifiedWorkloadFactory(tier=tier(METADATA)), kind="intent_drift", details=details
    )
    shown = make_finding(
        ClassifiedWorkloadFactory(tier=tier(FULL_TRACE)), kind="intent_drift", details=details
    )
    client.force_login(reviewer)
    page = client.get(reverse("findings:detail", args=[hidden.pk])).content.decode()
    assert "exfil.example" not in page and "1 not shown" in page
    api = APIClient()
    api.force_authenticate(reviewer)
    body = api.get(f"/api/v1/findings/{hidden.pk}").json()
    assert body["details"]["targets_outside_request"].startswith("1 not shown")
    full = client.get(reverse("findings:detail", args=[shown.pk])).content.decode()
    assert "exfil.example" in full
