import pytest
from django.test import Client
from rest_framework.test import APIClient

from governance.approvals import services
from governance.models import AccessRequest, ApprovalDecision
from governance.roles import APPROVER, IAM_ADMIN
from governance.tokens import service_token_create
from tests.approvals.conftest import user_with
from tests.factories import ClassifiedWorkloadFactory, tier
from workloads.models import CombinationRule, Entitlement, Tool

pytestmark = pytest.mark.django_db

TRIFECTA = ["web-search", "file-read", "code-exec"]


def api(user=None, token=None):
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def file_request(workload, by, slugs=("crm-api",)):
    return services.access_request_create(
        by=by,
        workload=workload,
        tools=list(Tool.objects.filter(slug__in=slugs)),
        justification="For the review.",
        duration_days=10,
    )


def test_an_owner_files_a_request_over_the_api(owner, boundary_workload):
    response = api(owner).post(
        "/api/v1/requests",
        {
            "workload": boundary_workload.slug,
            "tools": TRIFECTA,
            "justification": "Analyse datasets.",
            "duration_days": 14,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and sorted(body["tools"]) == sorted(TRIFECTA)
    assert [s["kind"] for s in body["steps"]] == ["approval", "approval", "exception"]
    assert body["impact"]["exceptions_needed"][0]["slug"] == "lethal-trifecta"


def test_a_misspelt_field_is_refused_not_dropped(owner, boundary_workload):
    # "duration" for duration_days: ignored, the request would go in without the end asked for.
    response = api(owner).post(
        "/api/v1/requests",
        {
            "workload": boundary_workload.slug,
            "tools": ["crm-api"],
            "justification": "Analyse datasets.",
            "duration": 14,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"duration": ["This field cannot be set here."]}
    assert not AccessRequest.objects.exists()


def test_a_write_token_files_for_a_named_owner(owner, boundary_workload):
    issued = service_token_create(
        name="ci", scopes=["write", "read"], workloads=[boundary_workload]
    )
    response = api(token=issued.secret).post(
        "/api/v1/requests",
        {
            "workload": boundary_workload.slug,
            "kind": "session_window",
            "max_tool_calls": 500,
            "justification": "Batch runs.",
            "duration_days": 3,
            "on_behalf_of": "owner",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    req = AccessRequest.objects.get()
    assert req.requested_by == owner and req.via_token == issued.token


def test_a_token_without_the_write_scope_cannot_file(boundary_workload):
    issued = service_token_create(name="reader", scopes=["read"], all_workloads=True)
    response = api(token=issued.secret).post(
        "/api/v1/requests",
        {"workload": boundary_workload.slug, "tools": ["crm-api"], "justification": "x"},
        format="json",
    )
    assert response.status_code == 403


def test_a_token_cannot_file_for_a_workload_it_is_not_bound_to(owner, boundary_workload):
    other = ClassifiedWorkloadFactory(owner=owner)
    issued = service_token_create(name="bound", scopes=["write"], workloads=[other])
    response = api(token=issued.secret).post(
        "/api/v1/requests",
        {
            "workload": boundary_workload.slug,
            "tools": ["crm-api"],
            "justification": "x",
            "duration_days": 2,
            "on_behalf_of": "owner",
        },
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_blocked_combination_is_422_with_the_rule_named(owner, read_workload):
    CombinationRule.objects.create(
        slug="no-crm-mail",
        name="No CRM mail-out",
        groups=[["tool:crm-api"], ["tool:send-email"]],
        scope="static",
        effect="forbid",
    )
    response = api(owner).post(
        "/api/v1/requests",
        {"workload": read_workload.slug, "tools": ["crm-api", "send-email"], "justification": "x"},
        format="json",
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "rule_violation" and error["rule"] == "no-crm-mail"
    assert "No CRM mail-out" in error["message"]


def test_an_approver_approves_and_a_second_decision_is_409(
    approver, approver2, owner, read_workload
):
    req = file_request(read_workload, owner)
    response = api(approver).post(
        f"/api/v1/requests/{req.pk}/approve", {"comment": "ok"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"
    assert Entitlement.objects.filter(request=req).count() == 1
    late = api(approver2).post(f"/api/v1/requests/{req.pk}/deny", {"comment": "no"}, format="json")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_pending"


def test_the_owner_cannot_approve_over_the_api(owner, approver, read_workload):
    owner.groups.add(*approver.groups.all())
    req = file_request(read_workload, owner)
    response = api(owner).post(f"/api/v1/requests/{req.pk}/approve", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "self_approval"
    assert not ApprovalDecision.objects.exists()


def test_tokens_never_decide(owner, read_workload):
    req = file_request(read_workload, owner)
    issued = service_token_create(
        name="all", scopes=["read", "write", "decide"], all_workloads=True
    )
    response = api(token=issued.secret).post(
        f"/api/v1/requests/{req.pk}/approve", {}, format="json"
    )
    assert response.status_code == 403


def test_session_auth_decisions_need_the_csrf_token(approver, owner, read_workload):
    req = file_request(read_workload, owner)
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    response = client.post(
        f"/api/v1/requests/{req.pk}/approve", {}, content_type="application/json"
    )
    assert response.status_code == 403
    req.refresh_from_db()
    assert req.status == "pending"


def test_an_exception_approval_over_the_api_needs_a_justification(
    admin_user, approver, approver2, owner, boundary_workload
):
    req = file_request(boundary_workload, owner, TRIFECTA)
    client = api(admin_user)
    response = client.post(f"/api/v1/requests/{req.pk}/approve", {}, format="json")
    assert response.status_code == 400
    assert "justification" in response.json()["error"]["fields"]
    response = client.post(
        f"/api/v1/requests/{req.pk}/approve", {"justification": "Sandboxed."}, format="json"
    )
    assert response.status_code == 200
    exception_step = response.json()["steps"][-1]
    assert exception_step["decided_by"] == admin_user.username


def test_cancel_then_cancel_again_is_409(owner, read_workload):
    req = file_request(read_workload, owner)
    client = api(owner)
    assert client.post(f"/api/v1/requests/{req.pk}/cancel", {}, format="json").status_code == 200
    again = client.post(f"/api/v1/requests/{req.pk}/cancel", {}, format="json")
    assert again.status_code == 409


def test_the_list_is_scoped_to_what_the_user_may_see(owner, approver, outsider, read_workload):
    mine = file_request(read_workload, owner)
    someone = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    from django.contrib.auth.models import Group

    someone.owner.groups.add(Group.objects.get(name="owner"))
    theirs = file_request(someone, someone.owner)
    owner_ids = {r["id"] for r in api(owner).get("/api/v1/requests").json()["results"]}
    assert owner_ids == {mine.pk}
    approver_ids = {r["id"] for r in api(approver).get("/api/v1/requests").json()["results"]}
    assert approver_ids == {mine.pk, theirs.pk}
    assert api(outsider).get("/api/v1/requests").status_code == 403
    assert api(owner).get(f"/api/v1/requests/{theirs.pk}").status_code == 404
    awaiting = api(approver).get("/api/v1/requests?view=awaiting&status=pending").json()
    assert awaiting["count"] == 2


def test_awaiting_lists_only_requests_the_user_could_decide_now(
    owner, approver, approver2, reviewer, admin_user, boundary_workload
):
    """Not for someone who may not approve at all, and not once only the rule exception is
    left for someone who may not give it."""
    req = services.access_request_create(
        by=owner,
        workload=boundary_workload,
        tools=list(Tool.objects.filter(slug__in=TRIFECTA)),
        justification="For the review.",
        duration_days=10,
    )
    url = "/api/v1/requests?view=awaiting"
    assert api(reviewer).get(url).json()["count"] == 0
    assert api(approver).get(url).json()["count"] == 1
    services.access_request_approve(access_request=req, by=approver)
    services.access_request_approve(access_request=req, by=approver2)
    assert [s.kind for s in req.steps.filter(decision__isnull=True)] == ["exception"]
    third = user_with("approver3", APPROVER)
    assert api(third).get(url).json()["count"] == 0
    iam = user_with("iam-approver", IAM_ADMIN, APPROVER)
    assert [r["id"] for r in api(iam).get(url).json()["results"]] == [req.pk]


@pytest.mark.parametrize("rows", [2, 10])
def test_the_list_runs_a_constant_number_of_queries(
    approver, owner, rows, django_assert_max_num_queries
):
    for i in range(rows):
        workload = ClassifiedWorkloadFactory(
            slug=f"api-{i}", owner=owner, tier=tier("internal-read")
        )
        file_request(workload, owner, ("crm-api", "sql-query"))
    client = api(approver)
    with django_assert_max_num_queries(9):
        response = client.get("/api/v1/requests")
    assert response.json()["count"] == rows


def test_every_request_endpoint_is_in_the_openapi_schema_with_examples(client):
    schema = client.get("/api/schema/", headers={"Accept": "application/json"}).json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/requests", "get"),
        ("/api/v1/requests", "post"),
        ("/api/v1/requests/{id}", "get"),
        ("/api/v1/requests/{id}/cancel", "post"),
        ("/api/v1/requests/{id}/approve", "post"),
        ("/api/v1/requests/{id}/deny", "post"),
    ]:
        assert method in paths[path], path
    approve = paths["/api/v1/requests/{id}/approve"]["post"]
    assert {"200", "403", "409", "422"} <= set(approve["responses"])
    assert approve["requestBody"]["content"]["application/json"]["examples"]
    create = paths["/api/v1/requests"]["post"]
    assert create["requestBody"]["content"]["application/json"]["examples"]


def test_the_token_that_filed_a_request_may_cancel_it(owner, boundary_workload):
    issued = service_token_create(
        name="ci2", scopes=["write", "read"], workloads=[boundary_workload]
    )
    client = api(token=issued.secret)
    created = client.post(
        "/api/v1/requests",
        {
            "workload": boundary_workload.slug,
            "tools": ["crm-api"],
            "justification": "x",
            "duration_days": 2,
            "on_behalf_of": "owner",
        },
        format="json",
    ).json()
    response = client.post(f"/api/v1/requests/{created['id']}/cancel", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_filing_and_deciding_are_write_throttled_with_a_429(owner, read_workload, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"write": "2/min"}
    }
    client = api(owner)
    body = {"workload": read_workload.slug, "tools": ["crm-api"], "justification": "Why"}
    assert client.post("/api/v1/requests", body, format="json").status_code == 201
    filed = AccessRequest.objects.get()
    assert client.post(f"/api/v1/requests/{filed.pk}/cancel", {}, format="json").status_code == 200
    refused = client.post("/api/v1/requests", body, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1
    assert AccessRequest.objects.count() == 1
    assert client.get("/api/v1/requests").status_code == 200  # reads are not write-throttled


def test_an_unknown_view_is_a_400_naming_it(owner):
    response = api(owner).get("/api/v1/requests?view=everything")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"view": ["Use awaiting or mine."]}


def test_a_token_acting_for_nobody_is_told_to_name_the_owner_in_on_behalf_of(boundary_workload):
    issued = service_token_create(name="ci", scopes=["write"], workloads=[boundary_workload])
    body = {
        "workload": boundary_workload.slug,
        "tools": ["crm-api"],
        "justification": "x",
        "duration_days": 2,
    }
    response = api(token=issued.secret).post("/api/v1/requests", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["on_behalf_of"]
    assert not AccessRequest.objects.exists()


def test_a_token_naming_no_such_user_is_told_there_is_none(owner, boundary_workload):
    issued = service_token_create(name="ci", scopes=["write"], workloads=[boundary_workload])
    body = {
        "workload": boundary_workload.slug,
        "tools": ["crm-api"],
        "justification": "x",
        "duration_days": 2,
        "on_behalf_of": "ghost",
    }
    response = api(token=issued.secret).post("/api/v1/requests", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_user"
    assert error["fields"] == {"on_behalf_of": ["There is no active user 'ghost'."]}


def test_a_person_cannot_file_on_behalf_of_someone_else(owner, approver, boundary_workload):
    body = {
        "workload": boundary_workload.slug,
        "tools": ["crm-api"],
        "justification": "x",
        "duration_days": 2,
        "on_behalf_of": approver.username,
    }
    response = api(owner).post("/api/v1/requests", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["on_behalf_of"]
    # Naming oneself is what filing means anyway.
    body["on_behalf_of"] = owner.username
    assert api(owner).post("/api/v1/requests", body, format="json").status_code == 201


def test_filing_the_same_pending_request_twice_is_a_409_naming_the_first(owner, read_workload):
    body = {"workload": read_workload.slug, "tools": ["crm-api"], "justification": "x"}
    first = api(owner).post("/api/v1/requests", body, format="json")
    assert first.status_code == 201
    again = api(owner).post("/api/v1/requests", {**body, "justification": "y"}, format="json")
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["request"]) == ("already_pending", first.json()["id"])
    assert AccessRequest.objects.count() == 1
