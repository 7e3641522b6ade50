"""Catalogue lists at scale (bench/pages.py): per-row counts are computed for the listed rows
only (these pin what they count), and sorts are total so pages never overlap."""

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.console.selectors import service_token_list
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, ToolFactory
from workloads.filters import WorkloadFilter
from workloads.models import Workload
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


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("-tier", ("-tier__rank", "slug")),
        ("status", ("status", "slug")),
        ("name", ("name", "slug")),
        ("slug", ("slug",)),
    ],
)
def test_workload_sorts_break_ties_by_slug_so_pages_do_not_overlap(ordering, expected):
    qs = WorkloadFilter({"ordering": ordering}, queryset=Workload.objects.all()).qs
    assert qs.query.order_by == expected


def test_workloads_sharing_a_tier_page_in_slug_order(admin_client):
    ClassifiedWorkloadFactory.create_batch(30)
    seen = []
    for page in (1, 2):
        response = admin_client.get(reverse("workloads:list"), {"ordering": "-tier", "page": page})
        seen += [w.slug for w in response.context["page"]]
    assert seen == sorted(seen) and len(set(seen)) == 30
