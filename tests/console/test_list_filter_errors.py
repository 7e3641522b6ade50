"""A list filtered by an invalid value says which filter is wrong, not just "No … match"."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

INVALID_FILTERS = [
    ("decisions:log", "decision-table", {"since": "x"}, "since: Enter a valid date/time."),
    ("decisions:log", "decision-table", {"decision": "maybe"}, "decision: Select a valid choice."),
    ("findings:queue", "finding-table", {"severity": "bogus"}, "severity: Select a valid choice."),
    ("usage:sessions", "session-table", {"since": "x"}, "since: Enter a valid date/time."),
    ("workloads:list", "workload-table", {"tier": "x"}, "tier: Select a valid choice."),
    ("approvals:queue", "request-table", {"view": "all", "status": "x"}, "status: Select a"),
    ("audit:log", "audit-table", {"since": "x"}, "since: Enter a valid date."),
]


@pytest.mark.parametrize(("name", "target", "params", "error"), INVALID_FILTERS)
def test_a_list_page_says_which_filter_value_is_invalid(admin_client, name, target, params, error):
    response = admin_client.get(reverse(name), params)
    assert response.status_code == 200
    assert error in response.content.decode()


@pytest.mark.parametrize(("name", "target", "params", "error"), INVALID_FILTERS)
def test_the_filtered_fragment_says_it_too(admin_client, name, target, params, error):
    headers = {"HX-Request": "true", "HX-Target": target}
    response = admin_client.get(reverse(name), params, headers=headers)
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert error in response.content.decode()


def test_valid_filters_show_no_error(admin_client):
    response = admin_client.get(reverse("findings:queue"), {"severity": "high"})
    assert response.status_code == 200
    assert b"Select a valid choice" not in response.content
