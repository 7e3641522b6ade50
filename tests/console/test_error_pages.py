"""Refusals and failures reach the user as console pages, and an expired session under htmx
goes to the login page rather than into a fragment."""

import logging

import pytest
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from governance.api_common import server_failed
from tests.factories import ClassifiedWorkloadFactory

pytestmark = pytest.mark.django_db


def test_a_page_outside_the_role_is_a_403_in_the_console_layout(client, owner):
    client.force_login(owner)

    response = client.get("/audit/")

    assert response.status_code == 403
    html = response.content.decode()
    assert "You may not open this" in html
    assert 'class="mainnav"' in html  # the user can go on from here
    assert 'href="/audit/"' not in html  # and is not offered the page again


def test_a_refusal_is_logged_as_one_line_without_a_traceback(client, owner, caplog):
    client.force_login(owner)

    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/audit/").status_code == 403

    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Forbidden (Permission denied): /audit/"
    assert record.exc_info is None


def test_an_unknown_address_is_a_404_in_the_console_layout(client, owner):
    client.force_login(owner)

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "There is no page at <code>/no-such-page/</code>" in response.content.decode()


def test_a_form_without_its_csrf_token_says_it_expired_and_changes_nothing(admin_user):
    workload = ClassifiedWorkloadFactory(slug="kept")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    response = browser.post(f"/workloads/{workload.slug}/status/", {"status": "suspended"})

    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
    workload.refresh_from_db()
    assert workload.status == "active"


def test_a_server_error_page_needs_no_request_context():
    response = server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "content_type", "expected"),
    [
        ("/api/v1/workloads", "application/json", b'"server_error"'),
        ("/v1/traces", "application/json", b'"code":13'),
        ("/v1/traces", "application/x-protobuf", b"\x08\x0d"),  # Status.code = 13
        ("/workloads/", "", b"Something went wrong on our side"),
    ],
)
def test_a_crash_answers_each_caller_in_its_own_format(path, content_type, expected):
    request = RequestFactory().post(path, data=b"{}", content_type=content_type)
    response = server_failed(request)
    assert response.status_code == 500
    assert expected in response.content


def test_the_api_crash_handler_is_installed(client, admin_user, monkeypatch):
    from workloads import api

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api.WorkloadViewSet, "list", crash)
    client.raise_request_exception = False
    client.force_login(admin_user)
    response = client.get("/api/v1/workloads")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"


def test_an_htmx_request_after_the_session_ended_sends_the_browser_to_log_in(client):
    workload = ClassifiedWorkloadFactory(slug="open-page")

    response = client.post(
        f"/workloads/{workload.slug}/session-policy/",
        {},
        headers={
            "HX-Request": "true",
            "HX-Target": "policy",
            "HX-Current-URL": f"http://testserver/workloads/{workload.slug}/",
        },
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login/?next=/workloads/{workload.slug}/"
    assert response.content == b""


def test_a_plain_request_after_the_session_ended_is_redirected_to_log_in(client):
    response = client.get("/audit/?action=grant.create")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/audit/%3Faction%3Dgrant.create"


@pytest.mark.parametrize(
    ("referer", "back_to"),
    [
        ("http://testserver/findings/3/?tab=comments", "/findings/3/%3Ftab%3Dcomments"),
        ("https://elsewhere.example/phish/", "/"),  # not ours: the dashboard
        (None, "/"),
    ],
)
def test_a_form_posted_after_the_session_ended_comes_back_to_its_page(client, referer, back_to):
    """Not to the form's own address, which answers only POST: logging in landed on a 405."""
    headers = {"Referer": referer} if referer else {}

    response = client.post("/findings/3/comment/", {"body": "lost?"}, headers=headers)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={back_to}"


def test_opening_a_forms_address_is_a_console_page_not_a_blank_405(client, reviewer):
    client.force_login(reviewer)

    response = client.get("/findings/3/comment/")

    assert response.status_code == 405 and response["Allow"] == "POST"
    # Rendered where the security middleware still sees it on the way out.
    assert "default-src" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    assert "This address is a form's, not a page" in html
    assert 'class="mainnav"' in html
