"""Every list endpoint runs a constant number of queries, however many rows it returns."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.approvals.services import rule_exception_revoke
from tests.factories import (
    ClassifiedWorkloadFactory,
    EntitlementFactory,
    ToolFactory,
    WorkloadFactory,
)
from workloads import services
from workloads.models import CombinationRule, RuleException, SensitivityTier, SessionExtension

pytestmark = pytest.mark.django_db


def _tiers(n):
    template = SensitivityTier.objects.get(slug="internal-read")
    start = SensitivityTier.objects.count()
    for i in range(start, start + n):
        template.pk = None
        template.slug, template.rank = f"extra-{i}", 1000 + i
        template.save()


def _rules(n, admin):
    start = 1000 + n
    for i in range(n):
        services.combination_rule_save(
            by=admin,
            slug=f"rule-{start + i}",
            name=f"Rule {i}",
            groups=[["web_access"], ["messaging"]],
        )


def _standing(n, admin):
    """Rule exceptions and session windows, some revoked."""
    rule = CombinationRule.objects.get(slug="lethal-trifecta")
    until = timezone.now() + timedelta(days=5)
    for i, workload in enumerate(ClassifiedWorkloadFactory.create_batch(n)):
        SessionExtension.objects.create(workload=workload, max_tool_calls=500, valid_until=until)
        exception = RuleException.objects.create(
            workload=workload, rule=rule, justification="Pilot.", valid_until=until
        )
        if i % 2:
            rule_exception_revoke(exception=exception, by=admin, reason="Withdrawn.")


ENDPOINTS = {
    "workloads": ("/api/v1/workloads", lambda n, admin: WorkloadFactory.create_batch(n)),
    "grants": ("/api/v1/grants", lambda n, admin: EntitlementFactory.create_batch(n)),
    "tools": ("/api/v1/tools", lambda n, admin: ToolFactory.create_batch(n)),
    "tiers": ("/api/v1/tiers", lambda n, admin: _tiers(n)),
    "rules": ("/api/v1/rules", _rules),
    "filtered workloads": (
        "/api/v1/workloads?tier=internal-act&ordering=-tier",
        lambda n, admin: ClassifiedWorkloadFactory.create_batch(n),
    ),
    "filtered grants": (
        "/api/v1/grants?status=active",
        lambda n, admin: EntitlementFactory.create_batch(n),
    ),
    "exceptions": ("/api/v1/exceptions", _standing),
    "filtered exceptions": ("/api/v1/exceptions?rule=lethal-trifecta", _standing),
    "session windows": ("/api/v1/session-windows", _standing),
    "filtered session windows": ("/api/v1/session-windows?status=active", _standing),
}


def _count(client, url) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url + ("&" if "?" in url else "?") + "page_size=200")
    assert response.status_code == 200
    return len(queries), response.json()["count"]


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("caller", ["user", "token"])
def test_list_endpoints_take_constant_queries(
    name, caller, admin_user, user_api, token_api, django_assert_max_num_queries
):
    url, make = ENDPOINTS[name]
    if caller == "user":
        client = user_api(admin_user)
    else:
        client = token_api(scopes=["read"], all_workloads=True)
    make(5, admin_user)
    few, few_rows = _count(client, url)
    make(45, admin_user)
    with django_assert_max_num_queries(few):
        many_rows = _count(client, url)[1]
    assert many_rows >= few_rows + 45


def test_the_workload_detail_takes_constant_queries(
    admin_user, user_api, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory(slug="busy")
    client = user_api(admin_user)
    EntitlementFactory.create_batch(2, workload=workload)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/workloads/busy").status_code == 200
    EntitlementFactory.create_batch(20, workload=workload)
    with django_assert_max_num_queries(len(queries)):
        body = client.get("/api/v1/workloads/busy").json()
    assert len(body["active_grants"]) == 22
