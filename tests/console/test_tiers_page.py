"""The tiers page: what classifying a workload into each tier means."""

import pytest
from django.urls import reverse

from tests.factories import ClassifiedWorkloadFactory, tier

pytestmark = pytest.mark.django_db


def _row(page: str, slug: str) -> str:
    return page[page.index(f'data-tier="{slug}"') :].split("</tr>", 1)[0]


def test_each_tier_shows_its_defaults_grants_window_ceiling_and_rules(owner_client):
    ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    page = owner_client.get(reverse("workloads:tiers")).content.decode()
    boundary = _row(page, "boundary-crossing")
    bc = tier("boundary-crossing")
    assert f"Inference window {bc.max_session_seconds} s" in boundary
    assert f"at most {bc.max_grant_days} days, end date required" in boundary
    assert f"{bc.max_session_seconds * 10} s" in boundary
    assert "A critical finding suspends the workload" in boundary
    assert '?tier=boundary-crossing">1</a>' in boundary
    assert "Nothing: a reviewer contains by hand" in _row(page, "generation-only")
    assert page.index('data-tier="generation-only"') < page.index('data-tier="boundary-crossing"')


def test_the_tiers_page_takes_the_same_queries_however_many_workloads(
    owner_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        owner_client.get(reverse("workloads:tiers"))
    for _ in range(5):
        ClassifiedWorkloadFactory(tier=tier("internal-read"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        owner_client.get(reverse("workloads:tiers"))


def test_the_navigation_links_the_tiers(owner_client):
    page = owner_client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("workloads:tiers")}"' in page
