from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.factories import (
    ClassifiedWorkloadFactory,
    EntitlementFactory,
    ToolFactory,
    WorkloadFactory,
    tier,
)
from workloads.models import Entitlement, SessionExtension

pytestmark = pytest.mark.django_db


def slugs(response):
    return [item["slug"] for item in response.json()["results"]]


def test_an_admin_lists_every_workload(user_api, admin_user):
    WorkloadFactory(slug="alpha")
    WorkloadFactory(slug="beta")
    response = user_api(admin_user).get("/api/v1/workloads")
    assert response.status_code == 200
    assert slugs(response) == ["alpha", "beta"]
    assert response.json()["count"] == 2


def test_an_owner_lists_only_their_own_workloads(user_api, owner):
    WorkloadFactory(slug="mine", owner=owner)
    WorkloadFactory(slug="theirs")
    assert slugs(user_api(owner).get("/api/v1/workloads")) == ["mine"]


def test_a_bound_token_sees_only_its_workloads(token_api):
    bound = WorkloadFactory(slug="bound")
    WorkloadFactory(slug="other")
    client = token_api(workloads=[bound])
    assert slugs(client.get("/api/v1/workloads")) == ["bound"]
    assert client.get("/api/v1/workloads/other").status_code == 404


def test_an_all_workloads_token_sees_every_workload(token_api):
    WorkloadFactory(slug="a")
    WorkloadFactory(slug="b")
    assert slugs(token_api(all_workloads=True).get("/api/v1/workloads")) == ["a", "b"]


def test_the_list_filters_with_the_shared_workload_filter(user_api, admin_user, owner):
    ClassifiedWorkloadFactory(slug="classified-bot", owner=owner, purpose="Reads invoices")
    WorkloadFactory(slug="draft-bot")
    client = user_api(admin_user)
    assert slugs(client.get("/api/v1/workloads?unclassified=true")) == ["draft-bot"]
    assert slugs(client.get("/api/v1/workloads?status=active")) == ["classified-bot"]
    assert slugs(client.get("/api/v1/workloads?tier=internal-act")) == ["classified-bot"]
    assert slugs(client.get("/api/v1/workloads?owner=owner")) == ["classified-bot"]
    assert slugs(client.get("/api/v1/workloads?q=invoices")) == ["classified-bot"]
    assert slugs(client.get("/api/v1/workloads?ordering=-slug")) == ["draft-bot", "classified-bot"]


def test_an_invalid_filter_value_is_a_400_with_the_field(user_api, admin_user):
    response = user_api(admin_user).get("/api/v1/workloads?status=sideways")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_the_detail_shows_tier_effective_session_limits_and_valid_grants(user_api, admin_user):
    workload = ClassifiedWorkloadFactory(slug="triage")
    workload.session_policy.max_tool_calls = 7
    workload.session_policy.save()
    now = timezone.now()
    SessionExtension.objects.create(
        workload=workload, max_session_seconds=99_999, valid_until=now + timedelta(days=1)
    )
    valid = EntitlementFactory(workload=workload, tool=ToolFactory(slug="search"))
    EntitlementFactory(
        workload=workload,
        tool=ToolFactory(slug="old"),
        valid_from=now - timedelta(days=3),
        valid_until=now - timedelta(days=1),
    )
    EntitlementFactory(
        workload=workload, tool=ToolFactory(slug="gone"), status=Entitlement.Status.REVOKED
    )
    body = user_api(admin_user).get("/api/v1/workloads/triage").json()
    internal_act = tier("internal-act")
    assert body["tier"] == {"slug": "internal-act", "name": internal_act.name, "rank": 30}
    assert body["session_policy"]["max_tool_calls"] == 7
    assert body["session_policy"]["max_session_seconds"] == 99_999
    assert body["session_policy"]["idle_timeout_seconds"] == internal_act.idle_timeout_seconds
    assert [g["tool"] for g in body["active_grants"]] == ["search"]
    assert body["active_grants"][0]["id"] == valid.pk


def test_an_unclassified_workload_has_no_limits_yet(user_api, admin_user):
    WorkloadFactory(slug="fresh")
    body = user_api(admin_user).get("/api/v1/workloads/fresh").json()
    assert body["tier"] is None
    assert set(body["session_policy"].values()) == {None}


def test_an_owner_gets_404_for_someone_elses_workload(user_api, owner):
    WorkloadFactory(slug="secret")
    response = user_api(owner).get("/api/v1/workloads/secret")
    assert response.status_code == 404
    unknown = user_api(owner).get("/api/v1/workloads/does-not-exist")
    assert response.json() == unknown.json()


def test_tiers_come_ordered_by_rank(token_api):
    response = token_api().get("/api/v1/tiers")
    assert [t["slug"] for t in response.json()["results"]] == [
        "generation-only",
        "internal-read",
        "internal-act",
        "boundary-crossing",
    ]
    detail = token_api().get("/api/v1/tiers/internal-read").json()
    assert detail["max_grant_days"] == tier("internal-read").max_grant_days


def test_tools_filter_by_capability_class(token_api):
    ToolFactory(slug="zz-browser", capability_class="web_access")
    body = token_api().get("/api/v1/tools?capability_class=web_access").json()
    assert body["results"]
    assert {t["capability_class"] for t in body["results"]} == {"web_access"}
    assert token_api().get("/api/v1/tools/zz-browser").json()["capability_class"] == "web_access"


def test_rules_include_the_seeded_lethal_trifecta(token_api):
    body = token_api().get("/api/v1/rules").json()
    assert body["results"]
    rule = body["results"][0]
    assert set(rule) == {"slug", "name", "description", "groups", "scope", "effect", "enabled"}
    assert len(rule["groups"]) >= 2


def test_grants_filter_by_workload_tool_and_status(user_api, admin_user):
    a = ClassifiedWorkloadFactory(slug="a")
    b = ClassifiedWorkloadFactory(slug="b")
    search = ToolFactory(slug="search")
    EntitlementFactory(workload=a, tool=search)
    EntitlementFactory(workload=b, tool=search, status=Entitlement.Status.REVOKED)
    EntitlementFactory(workload=b, tool=ToolFactory(slug="mail"))
    client = user_api(admin_user)

    def pairs(query):
        response = client.get(f"/api/v1/grants?{query}")
        assert response.status_code == 200
        return sorted((g["workload"], g["tool"], g["status"]) for g in response.json()["results"])

    assert pairs("workload=b") == [("b", "mail", "active"), ("b", "search", "revoked")]
    assert pairs("tool=search") == [("a", "search", "active"), ("b", "search", "revoked")]
    assert pairs("status=revoked") == [("b", "search", "revoked")]
    assert pairs("workload=b&status=active") == [("b", "mail", "active")]


def test_a_grant_past_its_end_reads_and_filters_as_expired_before_the_job_runs(
    user_api, admin_user
):
    grant = EntitlementFactory(valid_until=timezone.now() + timedelta(hours=1))
    client = user_api(admin_user)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        body = client.get(f"/api/v1/grants/{grant.pk}").json()
        assert body["status"] == "expired"
        expired = client.get("/api/v1/grants?status=expired").json()["results"]
        active = client.get("/api/v1/grants?status=active").json()["results"]
    grant.refresh_from_db()
    assert grant.status == Entitlement.Status.ACTIVE  # the job has not run
    assert [g["id"] for g in expired] == [grant.pk]
    assert active == []


def test_grants_are_scoped_to_visible_workloads(user_api, owner, token_api):
    mine = ClassifiedWorkloadFactory(owner=owner)
    EntitlementFactory(workload=mine)
    other = EntitlementFactory()
    ids = [g["id"] for g in user_api(owner).get("/api/v1/grants").json()["results"]]
    assert other.pk not in ids and len(ids) == 1
    assert user_api(owner).get(f"/api/v1/grants/{other.pk}").status_code == 404
    assert token_api(workloads=[mine]).get(f"/api/v1/grants/{other.pk}").status_code == 404


def test_an_outsider_is_refused_the_catalogue(user_api, outsider):
    WorkloadFactory()
    for url in ("/api/v1/workloads", "/api/v1/tiers", "/api/v1/tools", "/api/v1/grants"):
        response = user_api(outsider).get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "forbidden"
