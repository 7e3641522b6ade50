"""Findings and session pages: permissions, filters, triage, constant query counts."""

import pytest
from django.urls import reverse

from governance.evaluation.services import events_evaluate
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, tier
from tests.findings.api_rows import make_finding

pytestmark = pytest.mark.django_db


def _sessions_with_findings(n, workload=None):
    workload = workload or ClassifiedWorkloadFactory(tier=tier("internal-read"))
    sessions = []
    for i in range(n):
        session = make_session(workload)
        events_evaluate(
            **id_range(
                add_events(
                    session,
                    ("session_start", 0, {"content": "Summarise ticket"}),
                    ("tool_call", 1, {"tool": "send-email", "duration_ms": 120 + i}),
                )
            )
        )
        sessions.append(session)
    return sessions


def test_an_owner_and_an_outsider_cannot_open_findings(client, owner, outsider):
    for user in (owner, outsider):
        client.force_login(user)
        assert client.get(reverse("findings:queue")).status_code == 403
        assert client.get(reverse("usage:sessions")).status_code == 403


def test_the_queue_lists_and_filters_findings(client, reviewer):
    _sessions_with_findings(1)
    client.force_login(reviewer)
    page = client.get(reverse("findings:queue"))
    assert b"Unentitled tool use" in page.content
    empty = client.get(reverse("findings:queue"), {"kind": "reasoning_loop"})
    assert b"No findings match" in empty.content


def test_the_queue_serves_its_table_fragment_to_htmx(client, reviewer):
    _sessions_with_findings(1)
    client.force_login(reviewer)
    response = client.get(reverse("findings:queue"), headers={"HX-Request": "true"})
    assert b'id="finding-table"' in response.content
    assert b"<html" not in response.content


def test_the_queue_query_count_stays_constant(client, reviewer, django_assert_max_num_queries):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    _sessions_with_findings(2, workload)
    client.force_login(reviewer)
    with django_assert_max_num_queries(14) as small:
        client.get(reverse("findings:queue"))
    _sessions_with_findings(12, workload)
    with django_assert_max_num_queries(len(small.captured_queries)):
        client.get(reverse("findings:queue"))


def test_the_sessions_list_query_count_stays_constant(
    client, reviewer, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    _sessions_with_findings(2, workload)
    client.force_login(reviewer)
    with django_assert_max_num_queries(10) as small:
        client.get(reverse("usage:sessions"), {"workload": workload.slug})
    _sessions_with_findings(12, workload)
    with django_assert_max_num_queries(len(small.captured_queries)):
        client.get(reverse("usage:sessions"), {"workload": workload.slug})


def test_bulk_triage_updates_the_table_and_counts_out_of_band(client, reviewer):
    _sessions_with_findings(3)
    ids = list(Finding.objects.values_list("pk", flat=True))
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:bulk"),
        {"ids": ids[:2], "new_status": "acknowledged", "kind": "", "status": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert b'hx-swap-oob="true"' in response.content
    assert Finding.objects.filter(status="acknowledged").count() == 2


def _queue_form(findings, **fields):
    """What the queue's bulk form posts: the ids, the action, and the hidden filter copies."""
    filters = dict.fromkeys(("kind", "severity", "status", "workload", "tier", "assignee"), "")
    return filters | {"ids": [f.pk for f in findings]} | fields


def test_a_bulk_action_keeps_the_queues_status_filter(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    findings = [make_finding(workload) for _ in range(3)]
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:bulk"),
        _queue_form(findings[:2], status="open", new_status="acknowledged"),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert Finding.objects.filter(status="acknowledged").count() == 2
    # Still the Open queue: the finding left open is listed, the acknowledged ones are not.
    assert response.context["filters"]["status"] == "open"
    assert [f.pk for f in response.context["page"]] == [findings[2].pk]
    assert '<input type="hidden" name="status" value="open">' in response.content.decode()


def test_a_plain_bulk_post_goes_back_to_the_queue_with_its_filters(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    finding = make_finding(workload)
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:bulk"),
        _queue_form([finding], status="open", severity="high", new_status="resolved"),
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("findings:queue") + "?severity=high&status=open"
    finding.refresh_from_db()
    assert finding.status == "resolved"


@pytest.mark.parametrize("odd", ["²", "٣"])  # digits to str.isdigit, not to int()
def test_a_bulk_post_with_non_ascii_digits_is_handled_not_a_500(client, reviewer, odd):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    finding = make_finding(workload)
    client.force_login(reviewer)
    form = _queue_form([finding], status="open", new_status="resolved") | {"page": odd}
    response = client.post(reverse("findings:bulk"), form)
    assert response.status_code == 302 and "page=" not in response["Location"]
    form = _queue_form([finding], status="open", new_status="resolved") | {"ids": [odd]}
    assert client.post(reverse("findings:bulk"), form).status_code == 302


def _page_links(html: str) -> list[str]:
    nav = html.split('aria-label="Pages"')[1].split("</nav>")[0]
    return [part.split('"')[0] for part in nav.split('href="')[1:]]


def test_page_links_carry_the_filters_only(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    findings = [make_finding(workload) for _ in range(60)]
    client.force_login(reviewer)
    url = reverse("findings:queue")
    html = client.get(url, {"severity": "high", "page": "2", "junk": "x"}).content.decode()
    assert _page_links(html) == [
        "?severity=high&amp;status=open&amp;page=1",
        "?severity=high&amp;status=open&amp;page=3",
    ]
    after_bulk = client.post(
        reverse("findings:bulk"),
        _queue_form(findings[:1], status="open", new_status="acknowledged"),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert _page_links(after_bulk) == ["?status=open&amp;page=2"]


def test_the_bulk_action_must_be_chosen_before_it_applies(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    finding = make_finding(workload)
    client.force_login(reviewer)
    html = client.get(reverse("findings:queue")).content.decode()
    select = html.split('<select name="new_status"')[1].split("</select>")[0]
    assert select.startswith(" required>")
    assert '<option value="">Choose…</option>' in select
    assert "selected" not in select
    response = client.post(
        reverse("findings:bulk"),
        _queue_form([finding], status="open", new_status=""),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "Nothing updated: choose findings and a status" in response.content.decode()
    finding.refresh_from_db()
    assert finding.status == "open"


def test_an_auditor_cannot_bulk_triage(client, auditor):
    _sessions_with_findings(1)
    client.force_login(auditor)
    response = client.post(reverse("findings:bulk"), {"ids": [1], "new_status": "resolved"})
    assert response.status_code == 403


def test_the_timeline_marks_the_event_a_detector_fired_on(client, reviewer):
    (session,) = _sessions_with_findings(1)
    finding = Finding.objects.get()
    client.force_login(reviewer)
    page = client.get(reverse("usage:timeline", args=[session.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    marked = html.split(f'id="event-{finding.evidence[0]}"')[1].split("</li>")[0]
    assert "flagged" in html.split(f'id="event-{finding.evidence[0]}"')[0].rsplit("<li", 1)[1]
    assert reverse("findings:detail", args=[finding.pk]) in marked
    assert "ms" in marked


def test_a_reviewer_acknowledges_from_the_detail_page(client, reviewer):
    _sessions_with_findings(1)
    finding = Finding.objects.get()
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:status", args=[finding.pk]), {"status": "acknowledged"}
    )
    assert response.status_code == 303
    finding.refresh_from_db()
    assert finding.status == "acknowledged"


def test_the_dashboard_panels_render_svg_charts(client, auditor):
    _sessions_with_findings(2)
    client.force_login(auditor)
    response = client.get(reverse("findings:dashboard_panels"))
    assert response.status_code == 200
    assert b"<svg" in response.content
    assert b"style=" not in response.content


def test_a_reevaluation_job_raises_findings_for_a_rule_added_later(
    client, admin_user, django_capture_on_commit_callbacks, settings
):
    from workloads.models import CombinationRule

    settings.CELERY_TASK_ALWAYS_EAGER = True
    from governance.celery import app

    app.conf.task_always_eager = True
    try:
        workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
        session = make_session(workload)
        events_evaluate(
            **id_range(
                add_events(
                    session,
                    ("tool_call", 1, {"tool": "crm-api"}),
                    ("tool_call", 2, {"tool": "sql-query"}),
                )
            )
        )
        before = Finding.objects.filter(kind="forbidden_combination").count()
        CombinationRule.objects.create(
            slug="crm-and-warehouse",
            name="CRM and warehouse",
            groups=[["downstream_api"], ["data_store"]],
            scope="dynamic",
        )
        client.force_login(admin_user)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("findings:reevaluation"), {"days": 7})
        assert response.status_code == 302
        assert Finding.objects.filter(kind="forbidden_combination").count() == before + 1
        job_page = client.get(response["Location"], headers={"HX-Request": "true"})
        assert b"Done" in job_page.content
        assert b"hx-trigger" not in job_page.content
    finally:
        app.conf.task_always_eager = False


def test_a_failed_reevaluation_step_marks_the_job_failed(admin_user, monkeypatch):
    from django.utils import timezone

    from governance.evaluation import reevaluation, tasks
    from governance.models import ReevaluationJob

    job = ReevaluationJob.objects.create(days=1, since=timezone.now(), created_by=admin_user)

    def broken(**kwargs):
        raise ValueError("bad state")

    monkeypatch.setattr(reevaluation, "reevaluation_step", broken)
    with pytest.raises(ValueError):
        tasks.reevaluation_step_task.apply(kwargs={"job_id": job.pk}, throw=True)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "bad state" in job.error


def test_the_dashboard_counts_and_links_the_same_unresolved_findings(admin_client, reviewer):
    from governance.findings import services
    from tests.factories import ClassifiedWorkloadFactory
    from tests.findings.api_rows import make_finding

    workload = ClassifiedWorkloadFactory(slug="dash-wl")
    acknowledged = make_finding(workload, severity="high")
    services.finding_set_status(finding=acknowledged, status="acknowledged", by=reviewer)
    make_finding(workload, severity="low")
    panels = admin_client.get(reverse("findings:dashboard_panels"))
    (row,) = panels.context["top_workloads"]
    assert (row["n"], row["high"]) == (2, 1)
    link = reverse("findings:queue") + "?workload=dash-wl&amp;status=unresolved"
    assert link in panels.content.decode()
    queue = admin_client.get(
        reverse("findings:queue"), {"workload": "dash-wl", "status": "unresolved"}
    )
    assert len(queue.context["page"]) == 2


def _assigned_finding(reviewer):
    from governance.findings import services

    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    services.finding_assign(finding=finding, assignee=reviewer, by=reviewer)
    return finding


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_assigning_to_an_unknown_username_is_refused_and_changes_nothing(client, reviewer, headers):
    from governance.models import AuditEvent

    finding = _assigned_finding(reviewer)
    audited = AuditEvent.objects.count()
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:assign", args=[finding.pk]), {"assignee": "nosuchuser"}, headers=headers
    )
    assert response.status_code == 422
    assert "No user has that username." in response.content.decode()
    assert b"Assignee updated." not in response.content
    finding.refresh_from_db()
    assert finding.assignee == reviewer
    assert AuditEvent.objects.count() == audited


def test_assigning_to_someone_who_cannot_triage_is_a_field_error(client, reviewer, outsider):
    finding = _assigned_finding(reviewer)
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:assign", args=[finding.pk]),
        {"assignee": outsider.username},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#assign-form"
    assert b"Assign to someone who can triage findings." in response.content
    finding.refresh_from_db()
    assert finding.assignee == reviewer


def test_assigning_to_a_triager_or_nobody_is_done_and_audited(client, reviewer):
    from governance.models import AuditEvent

    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    client.force_login(reviewer)
    url = reverse("findings:assign", args=[finding.pk])
    assert client.post(url, {"assignee": reviewer.username}).status_code == 302
    finding.refresh_from_db()
    assert finding.assignee == reviewer
    assert client.post(url, {"assignee": ""}).status_code == 302
    finding.refresh_from_db()
    assert finding.assignee is None
    assert AuditEvent.objects.filter(action="finding.assign").count() == 2


def _containment(finding, action="suspend_workload"):
    from governance.models import ContainmentAction

    return ContainmentAction.objects.create(
        finding=finding, action=action, workload=finding.workload, reason="Contained."
    )


def test_a_stale_page_is_told_who_moved_the_finding_and_keeps_the_comment(
    client, reviewer, admin_user
):
    from governance.findings import services
    from governance.models import AuditEvent

    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    client.force_login(reviewer)
    html = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    assert '<input type="hidden" name="seen_status" value="open">' in html
    services.finding_set_status(finding=finding, status="acknowledged", by=admin_user)
    audited = AuditEvent.objects.count()

    url = reverse("findings:status", args=[finding.pk])
    stale = {"status": "acknowledged", "seen_status": "open", "comment": "Owner says: a drill"}
    response = client.post(url, stale, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#status-form"
    html = response.content.decode()
    assert "admin marked this finding acknowledged at " in html
    assert "Your comment was not saved: it is still below" in html
    assert "Owner says: a drill</textarea>" in html
    # The form now acts from the finding's status, and the page's badge says it.
    assert '<input type="hidden" name="seen_status" value="acknowledged">' in html
    assert 'id="finding-status" class="badge" data-testid="finding-status" hx-swap-oob' in html
    assert "Finding marked" not in html
    assert AuditEvent.objects.count() == audited and not finding.comments.exists()

    plain = client.post(url, stale)
    assert plain.status_code == 422
    assert "admin marked this finding acknowledged" in plain.content.decode()
    assert not [m for m in plain.context["messages"] if "marked" in str(m)]


def test_a_stale_false_positive_after_a_resolve_keeps_the_comment_and_reads_as_words(
    client, reviewer, admin_user
):
    from governance.findings import services

    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    services.finding_set_status(finding=finding, status="resolved", by=admin_user)
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:status", args=[finding.pk]),
        {"status": "false_positive", "seen_status": "open", "comment": "Test traffic"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "admin marked this finding resolved at " in html
    error = html.split('<div class="form-error" role="alert">')[1].split("</div>")[0]
    assert "false_positive" not in error and "_" not in error
    assert "Test traffic</textarea>" in html
    assert ">Reopen</button>" in html


def test_a_status_comment_longer_than_a_comment_is_a_field_error(client, reviewer):
    from governance.models import AuditEvent

    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:status", args=[finding.pk]),
        {"status": "acknowledged", "seen_status": "open", "comment": "x" * 5001},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "at most 5000 characters" in response.content.decode()
    finding.refresh_from_db()
    assert finding.status == "open" and not AuditEvent.objects.exists()


def test_closing_a_finding_whose_containment_holds_says_it_still_holds(client, reviewer):
    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    _containment(finding)
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:status", args=[finding.pk]),
        {"status": "resolved", "seen_status": "open"},
        follow=True,
    )
    said = [str(m) for m in response.context["messages"]]
    assert said[0] == "Finding marked resolved."
    assert said[1].startswith("Its containment is still in force: suspended the workload.")
    assert "an IAM admin reverses each measure on this page" in said[1]
    notice = response.content.decode().split('data-testid="closed-in-force">')[1].split("</p>")[0]
    assert notice.startswith("This finding is resolved, but its containment is still in force:")


def test_closing_a_finding_without_containment_in_force_says_nothing_more(client, reviewer):
    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    _containment(finding).__class__.objects.update(reversed_at="2020-01-01T00:00Z")
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:status", args=[finding.pk]), {"status": "resolved"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["Finding marked resolved."]
    assert 'data-testid="closed-in-force"' not in response.content.decode()


def test_the_queue_finds_closed_findings_whose_containment_holds(
    client, reviewer, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    held = make_finding(workload, status="resolved")
    _containment(held)
    lifted = make_finding(workload, status="false_positive")
    _containment(lifted).__class__.objects.filter(finding=lifted).update(
        reversed_at="2020-01-01T00:00Z"
    )
    make_finding(workload, status="resolved")
    client.force_login(reviewer)
    url = reverse("findings:queue")
    with django_assert_max_num_queries(14) as small:
        response = client.get(url, {"status": "", "containment": "in_force"})
    assert [f.pk for f in response.context["page"]] == [held.pk]
    assert "Containment in force" in response.content.decode()
    assert '<option value="in_force" selected>In force</option>' in response.content.decode()
    for _ in range(10):
        _containment(make_finding(workload, status="resolved"))
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url, {"status": "", "containment": "in_force"})
    assert len(response.context["page"]) == 11


def test_a_bulk_action_redraws_the_page_it_was_posted_from(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    findings = [make_finding(workload, severity="medium") for _ in range(60)]
    client.force_login(reviewer)
    html = client.get(reverse("findings:queue"), {"severity": "medium", "page": "2"})
    assert '<input type="hidden" name="page" value="2">' in html.content.decode()
    response = client.post(
        reverse("findings:bulk"),
        _queue_form(findings[:1], status="open", severity="medium", page="2")
        | {"new_status": "acknowledged"},
        headers={"HX-Request": "true"},
    )
    assert response.context["page"].number == 2
    assert response.headers["HX-Replace-Url"] == (
        reverse("findings:queue") + "?severity=medium&status=open&page=2"
    )
    plain = client.post(
        reverse("findings:bulk"),
        _queue_form(findings[1:2], status="open", severity="medium", page="2")
        | {"new_status": "acknowledged"},
    )
    assert plain["Location"].endswith("?severity=medium&status=open&page=2")


def test_a_bulk_action_names_the_findings_it_skipped_and_why(client, reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    resolved = make_finding(workload, status="resolved")
    acknowledged = make_finding(workload, status="acknowledged")
    open_ = make_finding(workload)
    _containment(open_)
    client.force_login(reviewer)
    response = client.post(
        reverse("findings:bulk"),
        _queue_form([resolved, acknowledged, open_], status="", new_status="acknowledged"),
        headers={"HX-Request": "true"},
    )
    outcome = response.content.decode().split('data-testid="bulk-outcome">')[1].split("<")[0]
    assert outcome == (
        f"1 updated. Skipped #{resolved.pk} (resolved: a closed finding can only be reopened). "
        f"Skipped #{acknowledged.pk} (already acknowledged)."
    )
    closing = client.post(
        reverse("findings:bulk"),
        _queue_form([open_], status="", new_status="resolved"),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert f"The containment of #{open_.pk} is still in force" in closing


def test_the_queue_offers_to_select_every_finding_on_the_page(client, reviewer):
    make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    client.force_login(reviewer)
    html = client.get(reverse("findings:queue")).content.decode()
    assert (
        '<input type="checkbox" data-select-all="ids" '
        'aria-label="Select every finding on this page">' in html
    )
