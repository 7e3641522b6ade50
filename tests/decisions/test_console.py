from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.decisions.selectors import decisions_for_session
from governance.models import Decision

pytestmark = pytest.mark.django_db


def make_decisions(n, **fields):
    now = timezone.now()
    base = dict(
        workload="triage",
        tool="web-search",
        session="s1",
        decision="allow",
        reason_code="allowed",
        reasons=[{"code": "allowed", "message": "ok"}],
        policy_version=3,
        latency_us=120,
    )
    Decision.objects.bulk_create(
        [Decision(**{**base, **fields, "decided_at": now - timedelta(seconds=i)}) for i in range(n)]
    )


@pytest.mark.parametrize(
    ("user", "status"),
    [("admin", 200), ("reviewer", 200), ("auditor", 200), ("owner", 403), ("approver", 403)],
)
def test_who_may_read_the_decision_log(client, cast, user, status):
    client.force_login(cast[user])
    assert client.get(reverse("decisions:log")).status_code == status


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    assert client.get(reverse("decisions:log")).status_code == 302


def test_the_log_filters_by_each_field(client, reviewer):
    make_decisions(3)
    make_decisions(2, tool="code-exec", decision="deny", reason_code="tool_not_granted")
    make_decisions(1, workload="other", session="s9")
    client.force_login(reviewer)
    url = reverse("decisions:log")

    def rows(**params):
        return len(client.get(url, params).context["decisions"])

    assert rows() == 6
    assert rows(workload="other") == 1
    assert rows(tool="code-exec") == 2
    assert rows(decision="deny") == 2
    assert rows(session="s9") == 1
    assert rows(since=(timezone.now() - timedelta(seconds=1.5)).isoformat()) == 5
    assert rows(decision="maybe") == 0


def test_the_log_pages_with_a_constant_number_of_queries(
    client, reviewer, django_assert_max_num_queries
):
    client.force_login(reviewer)
    make_decisions(5)
    with django_assert_max_num_queries(8):
        client.get(reverse("decisions:log"))
    make_decisions(120)
    first = client.get(reverse("decisions:log")).context["keyset"]
    with django_assert_max_num_queries(8):
        response = client.get(reverse("decisions:log"), {"before": first.older})
    assert len(response.context["decisions"]) == 50
    assert response.context["keyset"].older


def test_older_and_newer_links_walk_the_log_and_keep_the_filters(client, reviewer):
    make_decisions(60, tool="code-exec")
    make_decisions(5, tool="web-fetch")
    client.force_login(reviewer)
    url = reverse("decisions:log")
    first = client.get(url, {"tool": "code-exec"})
    body = first.content.decode()
    older = first.context["keyset"].older
    assert f"?tool=code-exec&amp;before={older}" in body
    second = client.get(url, {"tool": "code-exec", "before": older})
    assert len(second.context["decisions"]) == 10
    assert {d.tool for d in second.context["decisions"]} == {"code-exec"}
    assert second.context["keyset"].older is None
    newer = second.context["keyset"].newer
    assert f"?tool=code-exec&amp;after={newer}" in second.content.decode()
    back = client.get(url, {"tool": "code-exec", "after": newer})
    assert [d.id for d in back.context["decisions"]] == [d.id for d in first.context["decisions"]]


def test_a_page_link_that_is_not_ours_shows_the_newest_page_and_says_so(client, reviewer):
    make_decisions(3)
    client.force_login(reviewer)
    response = client.get(reverse("decisions:log"), {"before": "1' OR 1=1"})
    assert response.status_code == 200
    assert len(response.context["decisions"]) == 3
    assert "That page link is not valid" in response.content.decode()


@pytest.mark.parametrize("cursor", ["\N{SUPERSCRIPT TWO}-1", "1-\N{SUPERSCRIPT TWO}"])
def test_a_page_link_with_non_ascii_digits_is_refused_not_a_500(client, reviewer, cursor):
    make_decisions(2)
    client.force_login(reviewer)
    for key in ("before", "after"):
        response = client.get(reverse("decisions:log"), {key: cursor})
        assert response.status_code == 200
        assert len(response.context["decisions"]) == 2
        assert "That page link is not valid" in response.content.decode()


def test_an_htmx_request_gets_only_the_table(client, reviewer):
    make_decisions(1, tool="<script>alert(1)</script>")
    client.force_login(reviewer)
    response = client.get(reverse("decisions:log"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="decision-table">')
    assert "<script>alert(1)" not in body


def test_decisions_for_session_serves_the_timeline(reviewer, outsider):
    make_decisions(2)
    make_decisions(1, session="s2")
    found = decisions_for_session(user=reviewer, workload="triage", session_external_id="s1")
    assert found.count() == 2
    none = decisions_for_session(user=outsider, workload="triage", session_external_id="s1")
    assert none.count() == 0


def test_the_navigation_shows_decisions_to_reviewers(client, reviewer, owner):
    client.force_login(reviewer)
    labels = [i["label"] for i in client.get(reverse("dashboard")).context["navigation"]]
    assert "Decisions" in labels
    client.force_login(owner)
    labels = [i["label"] for i in client.get(reverse("dashboard")).context["navigation"]]
    assert "Decisions" not in labels


def test_the_page_charts_denials_per_hour_and_their_reasons(client, reviewer):
    from governance.decisions.log import DecisionLog, decision_row

    now = timezone.now().timestamp()
    log = DecisionLog(background=False)
    for n, (decision, code) in enumerate(
        [("allow", "allowed")] * 3
        + [("deny", "tool_not_granted")] * 2
        + [("deny", "grant_expired")]
    ):
        log.record(
            decision_row(
                decided_at=now - n,
                workload="triage",
                tool="web-search",
                session=None,
                decision=decision,
                reasons_json="[]",
                reason_code=code,
                policy_version=1,
                latency_us=10,
                token_id=None,
            )
        )
    log.flush()
    client.force_login(reviewer)
    response = client.get(reverse("decisions:log"))
    chart = response.context["chart"]
    assert (chart["allowed"], chart["denied"]) == (3, 3)
    assert chart["reasons"] == [("tool_not_granted", 2), ("grant_expired", 1)]
    assert sum(p["n"] for p in chart["denied_per_hour"]) == 3
    assert len(chart["denied_per_hour"]) == 24
    body = response.content.decode()
    assert "3 denied, 3 allowed" in body
    assert 'data-label="tool_not_granted" data-count="2"' in body
    filtered = client.get(reverse("decisions:log"), HTTP_HX_REQUEST="true")
    assert "chart" not in filtered.context  # filtering redraws only the table


def test_the_session_timeline_shows_its_decisions_and_links_to_the_log(
    client, reviewer, approver, monkeypatch
):
    from governance.decisions import selectors as decision_selectors
    from tests.evaluation.rows import add_events, make_session
    from tests.factories import ClassifiedWorkloadFactory

    session = make_session(ClassifiedWorkloadFactory())
    add_events(session, ("session_start", 0))
    slug = session.workload.slug
    make_decisions(3, workload=slug, session=session.external_id, tool="crm-api")
    make_decisions(2, workload=slug, session="another-run", tool="code-exec")
    url = reverse("usage:timeline", args=[session.pk])

    client.force_login(reviewer)
    page = client.get(url)
    shown = page.context["gateway"]["decisions"]
    assert [d.tool for d in shown] == ["crm-api"] * 3
    assert not page.context["gateway"]["more"]
    body = page.content.decode()
    assert f"?workload={slug}&amp;session={session.external_id}" in body

    monkeypatch.setattr(decision_selectors, "SESSION_DECISIONS_SHOWN", 2)
    assert client.get(url).context["gateway"]["more"]

    client.force_login(approver)  # sees the session, may not read the decision log
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["gateway"]["decisions"] == []
    assert "session-decisions" not in page.content.decode()


def test_a_logged_decision_links_to_its_session_timeline_when_there_is_one(
    client, reviewer, django_assert_max_num_queries
):
    from tests.evaluation.rows import make_session
    from tests.factories import ClassifiedWorkloadFactory

    session = make_session(ClassifiedWorkloadFactory())
    slug = session.workload.slug
    make_decisions(2, workload=slug, session=session.external_id)
    make_decisions(2, workload=slug, session="never-reported")
    make_decisions(40, workload=slug, session="")
    client.force_login(reviewer)
    with django_assert_max_num_queries(8):
        page = client.get(reverse("decisions:log"))
    by_session = {d.session: d.timeline_pk for d in page.context["decisions"]}
    assert by_session == {session.external_id: session.pk, "never-reported": None, "": None}
    body = page.content.decode()
    assert body.count(reverse("usage:timeline", args=[session.pk])) == 2


def _report_losses(lost: int) -> None:
    from django.db import transaction

    from governance.audit import audit_record
    from governance.decisions.log import LOSSES_ACTION

    with transaction.atomic():
        audit_record(by=None, action=LOSSES_ACTION, object_type="governance.decision",
                     after={"lost": lost, "dropped": lost, "rejected": 0})  # fmt: skip


def test_the_log_says_when_writers_lost_entries(client, reviewer, auditor):
    page = reverse("decisions:log")
    client.force_login(reviewer)
    assert 'id="log-losses"' not in client.get(page).content.decode()

    _report_losses(3)
    _report_losses(4)

    html = client.get(page).content.decode()
    assert "7 decisions could not be logged in the last 7 days" in html
    assert "?action=decision_log.entries_lost" not in html  # reviewers do not read the audit log
    client.force_login(auditor)
    assert "?action=decision_log.entries_lost" in client.get(page).content.decode()


@pytest.mark.parametrize("since", ["2026-11-27T21:40:00Z", "2026-11-27T22:40:00+01:00"])
def test_a_linked_time_filter_shows_in_its_field_as_the_browser_can(client, reviewer, since):
    """A datetime-local input stays empty for a value with a zone; the field shows the
    filter in the viewer's zone (UTC here) instead of hiding it."""
    client.force_login(reviewer)
    page = client.get(reverse("decisions:log"), {"since": since}).content.decode()
    assert 'name="since" value="2026-11-27T21:40:00"' in page
