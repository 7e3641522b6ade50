"""GET /api/v1/findings, /findings/{id} and POST /findings/{id}/status: scoping, filters,
triage through the service, error shapes, constant query counts."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.findings import services
from governance.models import AuditEvent, ContainmentAction, Finding, FindingComment
from tests.evaluation.rows import add_events, make_session
from tests.factories import ClassifiedWorkloadFactory, tier
from tests.findings.api_rows import make_finding

pytestmark = pytest.mark.django_db

LIST = "/api/v1/findings"


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def two_workloads():
    return ClassifiedWorkloadFactory(slug="alpha"), ClassifiedWorkloadFactory(slug="beta")


def test_a_reviewer_lists_findings_newest_first(reviewer, user_api, two_workloads):
    alpha, beta = two_workloads
    old = make_finding(alpha, age_minutes=30)
    new = make_finding(beta, age_minutes=1)
    body = user_api(reviewer).get(LIST).json()
    assert [row["id"] for row in body["results"]] == [new.pk, old.pk]
    row = body["results"][0]
    assert row["workload"] == "beta"
    assert row["tier"] == "internal-act"
    assert {"kind", "severity", "status", "evidence", "summary", "assignee"} <= set(row)


def test_a_token_bound_to_a_workload_sees_only_its_findings(token_api, two_workloads):
    alpha, beta = two_workloads
    mine = make_finding(alpha)
    theirs = make_finding(beta)
    bound = token_api(scopes=["read"], workloads=[alpha])
    assert _ids(bound.get(LIST)) == [mine.pk]
    assert bound.get(f"{LIST}/{theirs.pk}").status_code == 404
    assert bound.get(f"{LIST}/{mine.pk}").status_code == 200
    everything = token_api(scopes=["read"], all_workloads=True)
    assert set(_ids(everything.get(LIST))) == {mine.pk, theirs.pk}


def test_a_token_without_the_read_scope_is_refused(token_api, two_workloads):
    make_finding(two_workloads[0])
    response = token_api(scopes=["ingest", "decide"], all_workloads=True).get(LIST)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("role", ["owner", "outsider"])
def test_users_without_view_findings_are_refused(role, cast, user_api, two_workloads):
    finding = make_finding(two_workloads[0])
    client = user_api(cast[role])
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}/{finding.pk}").status_code == 403


def test_anonymous_callers_get_the_error_shape(api):
    response = api.get(LIST)
    assert response.status_code in (401, 403)
    assert set(response.json()["error"]) >= {"code", "message"}


@pytest.mark.parametrize("role", ["admin", "approver", "reviewer", "auditor"])
def test_every_role_with_view_findings_reads_them(role, cast, user_api, two_workloads):
    finding = make_finding(two_workloads[0])
    assert _ids(user_api(cast[role]).get(LIST)) == [finding.pk]


def test_each_filter_narrows_the_list(reviewer, user_api):
    alpha = ClassifiedWorkloadFactory(slug="alpha")
    beta = ClassifiedWorkloadFactory(slug="beta", tier=tier("internal-read"))
    session = make_session(alpha)
    base = make_finding(alpha, session=session, age_minutes=90)
    loop = make_finding(alpha, kind="reasoning_loop", severity="low", age_minutes=5)
    acked = make_finding(beta, status="acknowledged", assignee=reviewer, age_minutes=5)
    client = user_api(reviewer)
    since = (timezone.now() - timedelta(minutes=30)).isoformat()
    cases = {
        "kind=reasoning_loop": [loop],
        "severity=low": [loop],
        "status=acknowledged": [acked],
        "workload=beta": [acked],
        "tier=internal-read": [acked],
        f"session={session.pk}": [base],
        "assignee=reviewer": [acked],
        "workload=alpha&kind=unentitled_tool": [base],
    }
    for query, expected in cases.items():
        assert sorted(_ids(client.get(f"{LIST}?{query}"))) == sorted(f.pk for f in expected), query
    assert set(_ids(client.get(LIST, {"since": since}))) == {loop.pk, acked.pk}
    assert _ids(client.get(LIST, {"until": since})) == [base.pk]


def test_ordering_by_severity_puts_the_most_severe_first_then_the_newest(reviewer, user_api):
    workload = ClassifiedWorkloadFactory()
    low = make_finding(workload, severity="low", age_minutes=1)
    critical_old = make_finding(workload, severity="critical", age_minutes=20)
    critical_new = make_finding(workload, severity="critical", age_minutes=2)
    medium = make_finding(workload, severity="medium", age_minutes=3)
    client = user_api(reviewer)
    expected = [critical_new.pk, critical_old.pk, medium.pk, low.pk]
    assert _ids(client.get(LIST, {"ordering": "-severity"})) == expected
    assert _ids(client.get(LIST, {"ordering": "created"})) == [
        critical_old.pk,
        medium.pk,
        critical_new.pk,
        low.pk,
    ]


@pytest.mark.parametrize(
    "query",
    [
        "kind=nonsense",
        "severity=urgent",
        "tier=no-such-tier",
        "since=yesterday",
        "session=x",
        "session=1.5",
        "session=99999999999999999999999",
    ],
)
def test_an_invalid_filter_value_is_a_400_naming_the_field(query, reviewer, user_api):
    response = user_api(reviewer).get(f"{LIST}?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert query.split("=")[0] in error["fields"]


def test_the_queue_page_and_the_api_agree(client, reviewer, user_api):
    workload = ClassifiedWorkloadFactory(slug="agree")
    make_finding(workload, kind="reasoning_loop")
    hit = make_finding(workload, kind="intent_drift", summary="Drifted from the request.")
    client.force_login(reviewer)
    page = client.get(reverse("findings:queue"), {"kind": "intent_drift"})
    assert [f.pk for f in page.context["page"]] == [hit.pk]
    assert _ids(user_api(reviewer).get(LIST, {"kind": "intent_drift", "status": "open"})) == [
        hit.pk
    ]


def test_the_detail_shows_evidence_signal_comments_and_containment(reviewer, user_api):
    workload = ClassifiedWorkloadFactory(slug="detailed")
    session = make_session(workload)
    events = add_events(session, ("session_start", 0), ("tool_call", 1, {"tool": "send-email"}))
    finding = make_finding(
        workload,
        session=session,
        severity="critical",
        evidence=[e.id for e in events],
        details={"signal": "no_grant", "capability_class": "messaging"},
    )
    services.finding_comment_add(finding=finding, body="Looking into it.", by=reviewer)
    ContainmentAction.objects.create(finding=finding, action="suspend_workload", workload=workload)
    body = user_api(reviewer).get(f"{LIST}/{finding.pk}").json()
    assert body["evidence"] == [e.id for e in events]
    assert body["details"] == {"signal": "no_grant", "capability_class": "messaging"}
    assert body["session"] == session.pk
    assert [(c["author"], c["body"]) for c in body["comments"]] == [
        ("reviewer", "Looking into it.")
    ]
    assert body["containment"][0] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "action": "suspend_workload",
        "workload": "detailed",
        "grant": None,
        "tool": None,
        "limits": {},
        "reason": "",
        "reverse_reason": "",
        "created_at": "",
        "reversed_at": None,
        "reversed_by": None,
    }
    assert body["next_statuses"] == ["acknowledged", "false_positive", "resolved"]


def test_an_unknown_finding_is_a_404_in_the_error_shape(reviewer, user_api):
    response = user_api(reviewer).get(f"{LIST}/999999")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


# --- triage --------------------------------------------------------------------------------


def _status_url(finding) -> str:
    return reverse("finding-status", kwargs={"pk": finding.pk})


def test_a_reviewer_acknowledges_a_finding_with_a_comment(reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    response = user_api(reviewer).post(
        _status_url(finding), {"status": "acknowledged", "comment": "On it."}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "acknowledged"
    assert [c["body"] for c in body["comments"]] == ["On it."]
    finding.refresh_from_db()
    assert finding.status == "acknowledged"
    assert AuditEvent.objects.filter(action="finding.acknowledged", actor=reviewer).exists()


@pytest.mark.parametrize("status", ["resolved", "false_positive"])
def test_closing_a_finding_stamps_when(status, reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    body = user_api(reviewer).post(_status_url(finding), {"status": status}, format="json").json()
    assert body["status"] == status
    assert body["resolved_at"] is not None
    assert FindingComment.objects.count() == 0


def test_an_illegal_transition_is_a_409(reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory(), status="resolved")
    response = user_api(reviewer).post(
        _status_url(finding), {"status": "acknowledged"}, format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition"
    assert "status" in error["fields"]
    finding.refresh_from_db()
    assert finding.status == "resolved"


def test_setting_the_status_a_finding_has_changes_nothing(reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory(), status="acknowledged")
    before = AuditEvent.objects.count()
    response = user_api(reviewer).post(
        _status_url(finding), {"status": "acknowledged"}, format="json"
    )
    assert response.status_code == 200
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    "payload, field",
    [({"status": "closed"}, "status"), ({}, "status"), ({"status": "resolved", "by": "x"}, "by")],
)
def test_a_bad_triage_body_is_a_400(payload, field, reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    response = user_api(reviewer).post(_status_url(finding), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_a_token_never_triages_whatever_its_scopes(token_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    client = token_api(scopes=["read", "write", "ingest", "decide"], all_workloads=True)
    response = client.post(_status_url(finding), {"status": "resolved"}, format="json")
    assert response.status_code == 403
    finding.refresh_from_db()
    assert finding.status == "open"


def test_an_auditor_reads_but_cannot_triage(auditor, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    client = user_api(auditor)
    assert client.get(f"{LIST}/{finding.pk}").status_code == 200
    response = client.post(_status_url(finding), {"status": "resolved"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_triaging_an_unknown_finding_is_a_404(reviewer, user_api):
    response = user_api(reviewer).post(
        reverse("finding-status", kwargs={"pk": 999999}), {"status": "resolved"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_triage_needs_the_csrf_token_with_session_auth(reviewer):
    from rest_framework.test import APIClient

    finding = make_finding(ClassifiedWorkloadFactory())
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(_status_url(finding), {"status": "resolved"}, format="json")
    assert response.status_code == 403
    finding.refresh_from_db()
    assert finding.status == Finding.Status.OPEN


def test_triage_takes_json_only_and_says_so_for_a_form_body(reviewer, user_api):
    """The whole API speaks JSON (governance.api_common.JSONParser): a form body gets a
    machine-readable 415, not a silent misreading."""
    finding = make_finding(ClassifiedWorkloadFactory())
    response = user_api(reviewer).post(_status_url(finding), {"status": "false_positive"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    finding.refresh_from_db()
    assert finding.status == Finding.Status.OPEN


def test_triage_is_write_throttled_with_a_429(reviewer, user_api, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"write": "2/min"}
    }
    finding = make_finding(ClassifiedWorkloadFactory())
    client = user_api(reviewer)
    for status in ("acknowledged", "open"):
        response = client.post(_status_url(finding), {"status": status}, format="json")
        assert response.status_code == 200
    response = client.post(_status_url(finding), {"status": "resolved"}, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
    assert client.get(LIST).status_code == 200  # reads are not write-throttled


# --- query counts ----------------------------------------------------------------------------


def _many(n, workloads, reviewer):
    for i in range(n):
        workload = workloads[i % len(workloads)]
        finding = make_finding(
            workload, session=make_session(workload), assignee=reviewer, age_minutes=i
        )
        FindingComment.objects.create(finding=finding, author=reviewer, body="noted")


@pytest.mark.parametrize("caller", ["user", "bound token", "all-workloads token"])
@pytest.mark.parametrize("query", ["", "?ordering=-severity&tier=internal-act&status=open"])
def test_the_finding_list_takes_constant_queries(
    caller, query, reviewer, user_api, token_api, django_assert_max_num_queries
):
    workloads = [ClassifiedWorkloadFactory() for _ in range(3)]
    client = {
        "user": lambda: user_api(reviewer),
        "bound token": lambda: token_api(scopes=["read"], workloads=workloads),
        "all-workloads token": lambda: token_api(scopes=["read"], all_workloads=True),
    }[caller]()
    _many(5, workloads, reviewer)
    sep = "&" if query else "?"
    with CaptureQueriesContext(connection) as few:
        assert len(_ids(client.get(f"{LIST}{query}{sep}page_size=100"))) == 5
    _many(45, workloads, reviewer)
    with django_assert_max_num_queries(len(few)):
        assert len(_ids(client.get(f"{LIST}{query}{sep}page_size=100"))) == 50


def test_the_finding_detail_takes_constant_queries(
    reviewer, user_api, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory()
    finding = make_finding(workload)
    client = user_api(reviewer)
    services.finding_comment_add(finding=finding, body="one", by=reviewer)
    with CaptureQueriesContext(connection) as few:
        assert client.get(f"{LIST}/{finding.pk}").status_code == 200
    for i in range(20):
        services.finding_comment_add(finding=finding, body=f"more {i}", by=reviewer)
    ContainmentAction.objects.create(finding=finding, action="suspend_workload", workload=workload)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get(f"{LIST}/{finding.pk}").json()["comments"]) == 21


# --- assignee and comments ------------------------------------------------------------------


def test_a_triager_assigns_and_unassigns_a_finding(reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    url = f"{LIST}/{finding.pk}/assignee"
    body = user_api(reviewer).post(url, {"assignee": reviewer.username}, format="json").json()
    assert body["assignee"] == reviewer.username
    assert AuditEvent.objects.filter(action="finding.assign", object_id=str(finding.pk)).exists()
    body = user_api(reviewer).post(url, {"assignee": None}, format="json").json()
    assert body["assignee"] is None


def test_assigning_to_someone_who_cannot_triage_is_a_400(reviewer, auditor, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    url = f"{LIST}/{finding.pk}/assignee"
    for name in (auditor.username, "nobody-at-all"):
        response = user_api(reviewer).post(url, {"assignee": name}, format="json")
        assert response.status_code == 400
        assert "assignee" in response.json()["error"]["fields"]
    finding.refresh_from_db()
    assert finding.assignee is None


def test_a_triager_comments_on_a_finding(reviewer, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    url = f"{LIST}/{finding.pk}/comments"
    response = user_api(reviewer).post(
        url, {"body": "  Owner confirms a test run. "}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["body"] == "Owner confirms a test run."
    assert response.json()["author"] == reviewer.username
    detail = user_api(reviewer).get(f"{LIST}/{finding.pk}").json()
    assert [c["body"] for c in detail["comments"]] == ["Owner confirms a test run."]
    assert AuditEvent.objects.filter(action="finding.comment", object_id=str(finding.pk)).exists()
    empty = user_api(reviewer).post(url, {"body": "   "}, format="json")
    assert empty.status_code == 400
    assert "body" in empty.json()["error"]["fields"]


def test_tokens_and_readers_cannot_assign_or_comment(token_api, auditor, user_api):
    finding = make_finding(ClassifiedWorkloadFactory())
    token = token_api(scopes=["read", "write", "ingest", "decide"], all_workloads=True)
    for client in (token, user_api(auditor)):
        assignee = client.post(f"{LIST}/{finding.pk}/assignee", {"assignee": None}, format="json")
        comment = client.post(f"{LIST}/{finding.pk}/comments", {"body": "x"}, format="json")
        assert (assignee.status_code, comment.status_code) == (403, 403)
    assert FindingComment.objects.count() == 0
