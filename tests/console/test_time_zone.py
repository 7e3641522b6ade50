"""Times in the console are the viewer's; the API's stay UTC."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from governance.models import Decision, ServiceToken
from governance.timezones import COOKIE
from tests.factories import ClassifiedWorkloadFactory

pytestmark = pytest.mark.django_db
NOON_UTC = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)  # 13:00 in Berlin, 17:30 in Kolkata


def _token_expiring(at: datetime) -> ServiceToken:
    return ServiceToken.objects.create(
        name="gateway", prefix="abcd1234", token_hash="0" * 64, scopes=["read"], expires_at=at
    )


def test_times_are_shown_in_the_zone_the_browser_names(admin_client):
    _token_expiring(NOON_UTC)
    admin_client.cookies[COOKIE] = "Asia/Kolkata"
    page = admin_client.get(reverse("tokens:list")).content.decode()
    assert "2030-01-15 17:30" in page and "2030-01-15 12:00" not in page
    assert "Times are shown in Asia/Kolkata (your browser's time zone)" in page


@pytest.mark.parametrize("cookie", ["", "Mars/Olympus_Mons", "../../etc/passwd", "x" * 500])
def test_without_a_known_zone_times_are_shown_in_utc_and_say_so(admin_client, cookie):
    _token_expiring(NOON_UTC)
    admin_client.cookies[COOKIE] = cookie
    page = admin_client.get(reverse("tokens:list")).content.decode()
    assert "2030-01-15 12:00" in page and "Times are shown in UTC." in page


def test_a_typed_time_means_that_time_where_the_viewer_is(admin_client):
    ClassifiedWorkloadFactory(slug="bound-one")
    admin_client.cookies[COOKIE] = "Europe/Berlin"
    form = admin_client.get(reverse("tokens:list")).content.decode()
    assert "In Europe/Berlin." in form  # beside the expiry field
    admin_client.post(
        reverse("tokens:create"),
        {
            "name": "gateway",
            "scopes": ["decide"],
            "workloads": "bound-one",
            "expires_at": "2030-01-15T13:00",
        },
    )
    assert ServiceToken.objects.get(name="gateway").expires_at == NOON_UTC


def test_the_decision_log_reads_its_time_filter_in_the_viewer_zone(client, reviewer):
    Decision.objects.bulk_create(
        Decision(
            decided_at=NOON_UTC.replace(hour=hour),
            workload="w",
            tool="t",
            decision="allow",
            reason_code="allowed",
            policy_version=1,
            latency_us=1,
        )
        for hour in (11, 12)
    )
    client.force_login(reviewer)
    client.cookies[COOKIE] = "Europe/Berlin"
    # 13:00 in Berlin is noon UTC: only the later decision is at or after it.
    rows = client.get(reverse("decisions:log"), {"since": "2030-01-15T13:00"})
    assert [d.decided_at for d in rows.context["decisions"]] == [NOON_UTC]


def test_the_api_answers_in_utc_whatever_the_cookie(admin_client):
    workload = ClassifiedWorkloadFactory(slug="zoned")
    admin_client.cookies[COOKIE] = "Asia/Kolkata"
    body = admin_client.get(f"/api/v1/workloads/{workload.slug}").json()
    assert body["created_at"].endswith(("Z", "+00:00"))


def test_a_time_past_what_the_database_holds_is_a_field_error_in_any_zone(admin_client):
    """9999-12-31 23:00 in Los Angeles is in year 10000 UTC: refused on its field, never a
    500 nor a stored row that cannot be read back."""
    ClassifiedWorkloadFactory(slug="bound-one")
    admin_client.cookies[COOKIE] = "America/Los_Angeles"
    response = admin_client.post(
        reverse("tokens:create"),
        {
            "name": "forever-ish",
            "scopes": ["decide"],
            "workloads": "bound-one",
            "expires_at": "9999-12-31T23:00",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert not ServiceToken.objects.filter(name="forever-ish").exists()
    for url in ("decisions:log", "usage:sessions"):
        page = admin_client.get(reverse(url), {"until": "9999-12-31T23:00"})
        assert page.status_code == 200, url
        assert "less than or equal to" in page.content.decode(), url
