"""/api/v1/exceptions and /api/v1/session-windows: scoped reads, filters, revoke."""

import pytest
from django.test import Client
from django.utils import timezone

from governance.approvals import services
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory, UserFactory
from workloads.models import RuleException

from .test_api import api
from .test_revocation import exception_for, window_for

pytestmark = pytest.mark.django_db


def test_an_iam_admin_revokes_an_exception_over_the_api_then_gets_409(
    admin_user, boundary_workload
):
    exception = exception_for(boundary_workload)
    url = f"/api/v1/exceptions/{exception.pk}/revoke"
    response = api(admin_user).post(url, {"reason": "Sandbox leaks."}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["revoked_by"], body["revoke_reason"]) == (
        "revoked",
        admin_user.username,
        "Sandbox leaks.",
    )
    again = api(admin_user).post(url, {"reason": "Again."}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_active"


def test_a_revoke_needs_a_reason_and_the_right_person(
    admin_user, owner, approver, boundary_workload
):
    exception, window = exception_for(boundary_workload), window_for(boundary_workload)
    missing = api(admin_user).post(f"/api/v1/exceptions/{exception.pk}/revoke", {}, format="json")
    assert missing.status_code == 400
    assert "reason" in missing.json()["error"]["fields"]
    for who in (owner, approver):
        refused = api(who).post(
            f"/api/v1/exceptions/{exception.pk}/revoke", {"reason": "x"}, format="json"
        )
        assert refused.status_code == 403
    refused = api(approver).post(
        f"/api/v1/session-windows/{window.pk}/revoke", {"reason": "x"}, format="json"
    )
    assert refused.status_code == 403
    done = api(owner).post(
        f"/api/v1/session-windows/{window.pk}/revoke", {"reason": "Finished."}, format="json"
    )
    assert done.status_code == 200 and done.json()["status"] == "revoked"
    exception.refresh_from_db()
    assert exception.status == "active"


def test_tokens_read_but_never_revoke(boundary_workload):
    exception = exception_for(boundary_workload)
    secret = service_token_create(
        name="automation", scopes=["read", "write"], all_workloads=True
    ).secret
    client = api(token=secret)
    assert client.get("/api/v1/exceptions").json()["count"] == 1
    response = client.post(
        f"/api/v1/exceptions/{exception.pk}/revoke", {"reason": "x"}, format="json"
    )
    assert response.status_code == 403
    exception.refresh_from_db()
    assert exception.status == "active"


def test_session_auth_revokes_need_the_csrf_token(owner, boundary_workload):
    window = window_for(boundary_workload)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(
        f"/api/v1/session-windows/{window.pk}/revoke",
        {"reason": "x"},
        content_type="application/json",
    )
    assert response.status_code == 403
    window.refresh_from_db()
    assert window.status == "active"


def test_the_lists_are_scoped_like_grants(owner, approver, outsider, boundary_workload):
    exception_for(boundary_workload)
    window_for(boundary_workload)
    elsewhere = ClassifiedWorkloadFactory(owner=UserFactory(username="other-owner"))
    foreign = exception_for(elsewhere)
    window_for(elsewhere)
    mine = api(owner).get("/api/v1/exceptions").json()
    assert [row["workload"] for row in mine["results"]] == [boundary_workload.slug]
    assert api(owner).get("/api/v1/session-windows").json()["count"] == 1
    assert api(approver).get("/api/v1/exceptions").json()["count"] == 2
    assert api(owner).get(f"/api/v1/exceptions/{foreign.pk}").status_code == 404
    assert api(outsider).get("/api/v1/exceptions").status_code == 403
    bound = service_token_create(name="bound", scopes=["read"], workloads=[elsewhere]).secret
    seen = api(token=bound).get("/api/v1/session-windows").json()
    assert [row["workload"] for row in seen["results"]] == [elsewhere.slug]


def test_the_lists_filter_by_workload_rule_and_status_as_of_now(
    admin_user, boundary_workload, read_workload
):
    revoked = exception_for(boundary_workload)
    services.rule_exception_revoke(exception=revoked, by=admin_user, reason="Withdrawn.")
    lapsed = exception_for(read_workload)
    RuleException.objects.filter(pk=lapsed.pk).update(valid_until=timezone.now())
    active = exception_for(read_workload)
    client = api(admin_user)

    def ids(url):
        return [row["id"] for row in client.get(url).json()["results"]]

    assert ids("/api/v1/exceptions?status=active") == [active.pk]
    assert ids("/api/v1/exceptions?status=expired") == [lapsed.pk]
    assert ids("/api/v1/exceptions?status=revoked") == [revoked.pk]
    assert ids(f"/api/v1/exceptions?workload={boundary_workload.slug}") == [revoked.pk]
    assert ids("/api/v1/exceptions?rule=nope") == []
    assert client.get(f"/api/v1/exceptions/{lapsed.pk}").json()["status"] == "expired"
    window = window_for(read_workload)
    assert ids("/api/v1/session-windows?status=active&workload=reader") == [window.pk]
    assert client.get("/api/v1/session-windows?status=bogus").status_code == 400


@pytest.mark.parametrize("rows", [2, 12])
def test_the_lists_run_a_constant_number_of_queries(
    admin_user, rows, django_assert_max_num_queries
):
    for i in range(rows):
        workload = ClassifiedWorkloadFactory(slug=f"standing-{i}")
        exception = exception_for(workload)
        window = window_for(workload)
        if i % 2:
            services.rule_exception_revoke(exception=exception, by=admin_user, reason="x")
            services.session_extension_revoke(extension=window, by=admin_user, reason="x")
    client = api(admin_user)
    for url in ("/api/v1/exceptions", "/api/v1/session-windows"):
        with django_assert_max_num_queries(5):
            response = client.get(url)
        assert response.json()["count"] == rows


def test_the_new_endpoints_are_in_the_schema_with_examples(client):
    schema = client.get("/api/schema/", headers={"Accept": "application/json"}).json()
    for path, method in [
        ("/api/v1/exceptions", "get"),
        ("/api/v1/exceptions/{id}", "get"),
        ("/api/v1/exceptions/{id}/revoke", "post"),
        ("/api/v1/session-windows", "get"),
        ("/api/v1/session-windows/{id}", "get"),
        ("/api/v1/session-windows/{id}/revoke", "post"),
    ]:
        operation = schema["paths"][path][method]
        assert operation["responses"]["200"]["content"]["application/json"]["examples"], path
        if method == "post":
            assert {"400", "403", "404", "409"} <= set(operation["responses"]), path
            assert operation["requestBody"]["content"]["application/json"]["examples"], path
