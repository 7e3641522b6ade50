"""Sorting the lists: a stable order, and empty choices are no ordering rather than a 500."""

import pytest

from tests.factories import ClassifiedWorkloadFactory, WorkloadFactory

pytestmark = pytest.mark.django_db


LISTS = ["/api/v1/workloads", "/api/v1/findings", "/api/v1/requests"]


@pytest.mark.parametrize("path", [*LISTS, "/workloads/"])
@pytest.mark.parametrize("ordering", [",", ",,", ""])
def test_empty_ordering_choices_are_no_ordering_not_a_server_error(
    user_api, admin_user, path, ordering
):
    WorkloadFactory.create_batch(2)
    response = user_api(admin_user).get(path, {"ordering": ordering})
    assert response.status_code == 200


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("ordering", ["-", "created,,bogus"])
def test_an_unknown_ordering_is_a_400_naming_the_field(user_api, admin_user, path, ordering):
    response = user_api(admin_user).get(path, {"ordering": ordering})
    assert response.status_code == 400
    assert "ordering" in response.json()["error"]["fields"]


def test_ties_on_the_chosen_field_are_broken_by_the_slug(user_api, admin_user):
    for slug in ("delta", "alpha", "charlie", "bravo"):
        ClassifiedWorkloadFactory(slug=slug, status="active")
    response = user_api(admin_user).get("/api/v1/workloads", {"ordering": "status,"})
    assert [w["slug"] for w in response.json()["results"]] == ["alpha", "bravo", "charlie", "delta"]
