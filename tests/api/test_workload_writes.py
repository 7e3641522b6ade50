import pytest
from rest_framework.test import APIClient

from governance.models import AuditEvent
from tests.factories import UserFactory, WorkloadFactory
from workloads.models import Workload

pytestmark = pytest.mark.django_db

NEW = {
    "slug": "invoice-reader",
    "name": "Invoice reader",
    "purpose": "Reads supplier invoices and extracts totals.",
    "model_family": "deepseek-r1",
    "environment": "staging",
    "data_categories": ["finance", "finance"],
}


def test_a_write_token_registers_a_workload_for_a_named_owner(token_api, owner):
    client = token_api(scopes=["write"], all_workloads=True)
    response = client.post("/api/v1/workloads", NEW | {"owner": "owner"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["tier"] is None and body["owner"] == "owner"
    workload = Workload.objects.get(slug="invoice-reader")
    assert workload.owner == owner
    assert workload.data_categories == ["finance"]
    event = AuditEvent.objects.get(action="workload.register", object_id=str(workload.pk))
    assert event.actor_label == f"token:{client.token.name}"


def test_a_token_must_name_an_existing_owner(token_api, owner):
    client = token_api(scopes=["write"], all_workloads=True)
    missing = client.post("/api/v1/workloads", NEW, format="json")
    assert missing.status_code == 400
    assert "owner" in missing.json()["error"]["fields"]
    unknown = client.post("/api/v1/workloads", NEW | {"owner": "nobody"}, format="json")
    assert unknown.status_code == 400
    assert "owner" in unknown.json()["error"]["fields"]
    assert not Workload.objects.exists()


def test_a_token_acting_for_a_user_is_attributed_to_them(token_api, admin_user, owner):
    client = token_api(scopes=["write"], acts_for=admin_user, all_workloads=True)
    client.post("/api/v1/workloads", NEW | {"owner": "owner"}, format="json")
    event = AuditEvent.objects.get(action="workload.register")
    assert event.actor == admin_user


@pytest.mark.parametrize("bound_to_one", [True, False])
def test_a_bound_token_may_not_register_what_it_could_not_act_for(token_api, owner, bound_to_one):
    workloads = [WorkloadFactory()] if bound_to_one else []
    client = token_api(scopes=["read", "write"], workloads=workloads)
    response = client.post("/api/v1/workloads", NEW | {"owner": "owner"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "token_bound"
    assert not Workload.objects.filter(slug=NEW["slug"]).exists()


def test_a_token_registers_as_the_user_it_acts_for_would(token_api, owner, approver):
    client = token_api(scopes=["write"], acts_for=owner, all_workloads=True)
    for_someone_else = client.post("/api/v1/workloads", NEW | {"owner": "approver"}, format="json")
    assert for_someone_else.status_code == 403
    response = client.post("/api/v1/workloads", NEW, format="json")
    assert response.status_code == 201 and response.json()["owner"] == "owner"


def test_a_token_acting_for_a_deactivated_user_registers_nothing_for_them(token_api, owner):
    client = token_api(scopes=["write"], acts_for=owner, all_workloads=True)
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    response = client.post("/api/v1/workloads", NEW, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["owner"]
    assert not Workload.objects.exists()


def test_a_token_may_name_as_owner_only_someone_who_may_own_workloads(token_api, approver):
    client = token_api(scopes=["write"], all_workloads=True)
    response = client.post("/api/v1/workloads", NEW | {"owner": "approver"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["owner"]
    assert not Workload.objects.exists()


def test_a_user_owns_what_they_register(user_api, owner):
    response = user_api(owner).post("/api/v1/workloads", NEW, format="json")
    assert response.status_code == 201
    assert Workload.objects.get(slug="invoice-reader").owner == owner
    event = AuditEvent.objects.get(action="workload.register")
    assert event.actor == owner


def test_an_owner_may_not_register_for_someone_else(user_api, owner):
    UserFactory(username="someone")
    response = user_api(owner).post("/api/v1/workloads", NEW | {"owner": "someone"}, format="json")
    assert response.status_code == 403
    assert not Workload.objects.exists()


def test_an_iam_admin_may_register_for_a_named_owner(user_api, admin_user, owner):
    response = user_api(admin_user).post(
        "/api/v1/workloads", NEW | {"owner": "owner"}, format="json"
    )
    assert response.status_code == 201
    assert Workload.objects.get(slug="invoice-reader").owner == owner


def test_registration_refuses_status_tier_and_other_read_only_fields(token_api, owner):
    client = token_api(scopes=["write"])
    response = client.post(
        "/api/v1/workloads",
        NEW | {"owner": "owner", "status": "active", "tier": "internal-act"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status", "tier"}


def test_a_duplicate_slug_is_a_409(token_api, owner):
    WorkloadFactory(slug="invoice-reader")
    response = token_api(scopes=["write"], all_workloads=True).post(
        "/api/v1/workloads", NEW | {"owner": "owner"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate"
    assert "slug" in response.json()["error"]["fields"]


def test_the_owner_updates_purpose_and_name(user_api, owner):
    workload = WorkloadFactory(slug="mine", owner=owner)
    response = user_api(owner).patch(
        "/api/v1/workloads/mine", {"purpose": "Only reads.", "name": "Mine"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["purpose"] == "Only reads."
    workload.refresh_from_db()
    assert (workload.purpose, workload.name) == ("Only reads.", "Mine")
    event = AuditEvent.objects.get(action="workload.update")
    assert event.before["purpose"] != event.after["purpose"] == "Only reads."


def test_a_bound_write_token_updates_its_workload(token_api):
    workload = WorkloadFactory(slug="bound")
    client = token_api(scopes=["read", "write"], workloads=[workload])
    response = client.patch("/api/v1/workloads/bound", {"purpose": "New"}, format="json")
    assert response.status_code == 200
    workload.refresh_from_db()
    assert workload.purpose == "New"


def test_owner_status_and_tier_cannot_be_changed_by_update(user_api, admin_user):
    workload = WorkloadFactory(slug="w")
    response = user_api(admin_user).patch(
        "/api/v1/workloads/w",
        {"purpose": "x", "owner": "admin", "status": "active", "tier": "internal-act"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"owner", "status", "tier"}
    workload.refresh_from_db()
    assert workload.status == "draft" and workload.tier is None


def test_an_empty_update_is_a_400(user_api, admin_user):
    WorkloadFactory(slug="w")
    response = user_api(admin_user).patch("/api/v1/workloads/w", {}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()["error"]["fields"]


def test_updating_an_invisible_workload_is_a_404(user_api, owner, token_api):
    WorkloadFactory(slug="not-mine")
    response = user_api(owner).patch("/api/v1/workloads/not-mine", {"purpose": "x"}, format="json")
    assert response.status_code == 404
    other = WorkloadFactory(slug="other")
    bound = token_api(scopes=["write"], workloads=[other])
    assert (
        bound.patch("/api/v1/workloads/not-mine", {"purpose": "x"}, format="json").status_code
        == 404
    )


def test_a_read_only_role_may_not_write(user_api, approver):
    WorkloadFactory(slug="w")
    client = user_api(approver)
    assert client.post("/api/v1/workloads", NEW, format="json").status_code == 403
    assert client.patch("/api/v1/workloads/w", {"purpose": "x"}, format="json").status_code == 403


def test_a_session_write_without_the_csrf_token_is_refused(owner):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/api/v1/workloads", NEW, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not Workload.objects.exists()
