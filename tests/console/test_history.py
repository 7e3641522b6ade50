"""A page and its htmx fragment share a URL: the browser must not mistake one for the other."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["workloads:list", "findings:queue", "decisions:log"])
def test_a_list_and_its_fragment_say_they_vary_with_hx_request(admin_client, name):
    url = reverse(name) + "?q=x"
    page = admin_client.get(url)
    fragment = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert page.status_code == fragment.status_code == 200
    for response in (page, fragment):
        vary = {v.strip().lower() for v in response["Vary"].split(",")}
        assert "hx-request" in vary


@pytest.mark.parametrize("name", ["findings:queue", "decisions:log", "approvals:queue"])
def test_htmx_restoring_a_page_its_history_lost_gets_the_whole_page(admin_client, name):
    restored = admin_client.get(
        reverse(name), HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert restored.status_code == 200
    assert b"<html" in restored.content
