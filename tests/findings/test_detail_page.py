"""A finding's page: readable details, evidence linked to the timeline, a labelled comment box."""

import pytest
from django.urls import reverse

from governance.findings import selectors
from governance.templatetags.mandate import detail_rows
from tests.evaluation.rows import add_events, make_session
from tests.factories import ClassifiedWorkloadFactory, tier
from tests.findings.api_rows import make_finding


def test_details_read_as_words_not_json():
    rows = detail_rows(
        {
            "in_catalogue": True,
            "grant_status": "expired",
            "tools": ["crm-api", "send-email"],
            "signals": [],
            "similarity": 0.25,
            "limit": None,
            "flag": False,
        }
    )
    assert rows == [
        ("In catalogue", "Yes"),
        ("Grant status", "expired"),
        ("Tools", "crm-api, send-email"),
        ("Signals", "—"),
        ("Similarity", "0.25"),
        ("Limit", "—"),
        ("Flag", "No"),
    ]


@pytest.mark.django_db
def test_the_detail_page_shows_details_readably_and_labels_the_comment_box(client, reviewer):
    finding = make_finding(
        ClassifiedWorkloadFactory(tier=tier("internal-read")),
        details={"in_catalogue": False, "tools": ["crm-api", "send-email"]},
    )
    client.force_login(reviewer)
    html = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    assert "<dt>In catalogue</dt><dd>No</dd>" in html
    assert "<dt>Tools</dt><dd>crm-api, send-email</dd>" in html
    assert "In_catalogue" not in html and "True" not in html
    assert '<label for="id_body">' in html and 'id="id_body"' in html


@pytest.mark.django_db
def test_evidence_links_to_the_event_on_its_timeline_page(client, reviewer, monkeypatch):
    monkeypatch.setattr(selectors, "TIMELINE_PAGE", 3)
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    session = make_session(workload)
    events = add_events(session, *[("tool_call", i, {"tool": "crm-api"}) for i in range(5)])
    evidence = events[4].pk
    finding = make_finding(workload, session=session, evidence=[evidence])
    client.force_login(reviewer)

    html = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    link = f"{reverse('usage:timeline', args=[session.pk])}?event={evidence}#event-{evidence}"
    assert f'<a href="{link}">event {evidence}</a>' in html

    timeline = client.get(link.split("#")[0])
    assert timeline.context["page"] == 2
    assert f'id="event-{evidence}"' in timeline.content.decode()


@pytest.mark.django_db
def test_an_event_not_of_the_session_opens_the_timeline_at_its_start(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    session, other = make_session(workload), make_session(workload)
    add_events(session, ("session_start", 0))
    (elsewhere,) = add_events(other, ("session_start", 0))
    client.force_login(reviewer)
    url = reverse("usage:timeline", args=[session.pk])
    for event in (str(elsewhere.pk), "9" * 40, "\N{SUPERSCRIPT TWO}"):
        response = client.get(url, {"event": event})
        assert response.status_code == 200 and response.context["page"] == 1
