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


def test_details_with_a_unit_in_their_key_read_as_a_label_and_a_unit():
    assert detail_rows({"dated_ahead_seconds": 3, "reported_late_seconds": 40}) == [
        ("Dated ahead of arrival", "3 s"),
        ("Reported late", "40 s"),
    ]
    assert detail_rows({"idle_seconds": 700, "limit_seconds": None, "lag_ms": 12}) == [
        ("Idle for", "700 s"),
        ("Limit", "—"),
        ("Lag", "12 ms"),
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


def _suspension():
    """A finding whose containment suspended its workload (owned by someone else)."""
    from governance.models import ContainmentAction
    from workloads import services as workload_services
    from workloads.models import Workload

    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    workload_services.workload_set_status(
        workload=workload, status=Workload.Status.SUSPENDED, by=None, reason="Contained."
    )
    finding = make_finding(workload, severity="critical")
    action = ContainmentAction.objects.create(
        finding=finding, action=ContainmentAction.Action.SUSPEND_WORKLOAD, workload=workload
    )
    return workload, finding, action


@pytest.mark.django_db
def test_the_reverse_button_asks_to_confirm_and_for_a_reason(client, admin_user):
    _workload, finding, action = _suspension()
    client.force_login(admin_user)
    html = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    form = html.split(f'<form id="reverse-{action.pk}"')[1].split("</form>")[0]
    # hx-confirm only asks on an htmx request: the form must post through htmx.
    assert f'hx-post="{reverse("findings:reverse_containment", args=[action.pk])}"' in form
    assert 'hx-confirm="Reinstate this workload? Its grants apply again at once."' in form
    assert f'<label class="sr-only" for="reverse-reason-{action.pk}">' in form
    assert 'name="reason"' in form and "required" in form


@pytest.mark.django_db
def test_a_reversal_with_a_reason_reinstates_and_audits_it(client, admin_user):
    from governance.models import AuditEvent

    workload, finding, action = _suspension()
    client.force_login(admin_user)
    response = client.post(
        reverse("findings:reverse_containment", args=[action.pk]),
        {"reason": "False alarm: a drill."},
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Redirect"] == reverse("findings:detail", args=[finding.pk])
    workload.refresh_from_db()
    assert workload.status == "active"
    audit = AuditEvent.objects.get(action="containment.reverse")
    assert audit.after["reason"] == "False alarm: a drill."


@pytest.mark.django_db
def test_a_reversal_without_a_reason_changes_nothing(client, admin_user):
    workload, _finding, action = _suspension()
    client.force_login(admin_user)
    url = reverse("findings:reverse_containment", args=[action.pk])
    response = client.post(url, {"reason": " "}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == f"#reverse-{action.pk}"
    assert "Say why the containment is reversed." in response.content.decode()
    plain = client.post(url, {})
    assert plain.status_code == 303
    workload.refresh_from_db()
    action.refresh_from_db()
    assert workload.status == "suspended" and action.reversed_at is None


@pytest.mark.django_db
def test_a_reason_too_long_to_keep_is_refused_with_the_forms_own_error(client, admin_user):
    workload, _finding, action = _suspension()
    client.force_login(admin_user)
    url = reverse("findings:reverse_containment", args=[action.pk])
    response = client.post(url, {"reason": "x" * 501}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "Ensure this value has at most 500 characters (it has 501)." in html
    assert "Say why the containment is reversed." not in html
    workload.refresh_from_db()
    assert workload.status == "suspended"
