"""Per-row counts on catalogue lists are computed for the listed rows only (bench/pages.py);
these pin what they count."""

import pytest
from django.utils import timezone

from governance.console.selectors import service_token_list
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, ToolFactory
from workloads.selectors import tool_list

pytestmark = pytest.mark.django_db


def test_the_tool_list_counts_only_active_grants_of_each_tool():
    busy, idle = ToolFactory(slug="aa-busy"), ToolFactory(slug="aa-idle")
    EntitlementFactory.create_batch(2, tool=busy)
    EntitlementFactory(tool=busy, status="revoked", revoked_at=timezone.now())
    counts = {t.slug: t.active_grants for t in tool_list().filter(slug__startswith="aa-")}
    assert counts == {"aa-busy": 2, "aa-idle": 0}
    assert idle.slug in counts


def test_the_token_list_shows_bound_workload_slugs_in_order():
    zeta = ClassifiedWorkloadFactory(slug="zeta-agent")
    alpha = ClassifiedWorkloadFactory(slug="alpha-agent")
    service_token_create(name="gw", scopes=["read"], workloads=[zeta, alpha])
    (token,) = service_token_list()
    assert [w.slug for w in token.workloads.all()] == ["alpha-agent", "zeta-agent"]
