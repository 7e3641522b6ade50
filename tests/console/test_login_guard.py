"""Failed logins are limited per username and address and per address, refused before the
password is checked, and logins and lockouts are audited."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache

from governance.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory


@pytest.fixture(autouse=True)
def _fresh_counts():
    cache.clear()
    yield
    cache.clear()


def attempt(client, username, password="wrong", headers=None, **environ):
    form = {"username": username, "password": password}
    return client.post("/login/", form, headers=headers or {}, **environ)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_after_five_failures_even_the_right_password_is_refused(client, admin_user):
    for _ in range(5):
        assert attempt(client, admin_user.username).status_code == 200

    response = attempt(client, admin_user.username, PASSWORD)

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 900
    assert "Too many failed attempts. Try again in" in response.content.decode()
    assert not logged_in(client)


def test_a_refused_attempt_never_reaches_the_password_check(client, admin_user):
    for _ in range(5):
        attempt(client, admin_user.username)
    checked = []
    user_login_failed.connect(receiver := lambda **kw: checked.append(kw), weak=False)
    try:
        attempt(client, admin_user.username)
    finally:
        user_login_failed.disconnect(receiver)
    assert checked == []


def test_someone_else_from_the_same_address_may_still_log_in(client, admin_user, reviewer):
    for _ in range(5):
        attempt(client, admin_user.username)

    response = attempt(client, reviewer.username, PASSWORD)

    assert response.status_code == 302 and logged_in(client)


def test_many_accounts_tried_from_one_address_close_it(client, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 6
    for n in range(6):
        attempt(client, f"guess-{n}")
    user = UserFactory(username="untouched")

    assert attempt(client, user.username, PASSWORD).status_code == 429
    # Another address is not affected.
    assert attempt(client, user.username, PASSWORD, REMOTE_ADDR="10.0.0.9").status_code == 302


def _window_start(offset: float = 0):
    """A moment `offset` seconds into a 900 s window (the limits' windows are epoch-aligned)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(1_800_000_000 // 900 * 900 + offset, tz=UTC)


def test_the_limit_lifts_when_it_says_it_will(client, admin_user):
    with time_machine.travel(_window_start(100), tick=False) as clock:
        for _ in range(5):
            attempt(client, admin_user.username)
        refused = attempt(client, admin_user.username, PASSWORD)
        assert refused.status_code == 429
        wait = int(refused["Retry-After"])
        assert 0 < wait <= 1800
        clock.shift(timedelta(seconds=wait - 5))
        assert attempt(client, admin_user.username, PASSWORD).status_code == 429
        clock.shift(timedelta(seconds=5))
        assert attempt(client, admin_user.username, PASSWORD).status_code == 302


def test_failures_either_side_of_a_window_boundary_count_together(client, admin_user):
    """Fixed windows would allow four failures at one window's end and four more at the
    next one's start: six failures within a minute must close the account."""
    with time_machine.travel(_window_start(890), tick=False) as clock:
        for _ in range(4):
            attempt(client, admin_user.username)
        clock.shift(timedelta(seconds=20))  # 10 s into the next window
        for _ in range(2):
            attempt(client, admin_user.username)
        refused = attempt(client, admin_user.username, PASSWORD)
        assert refused.status_code == 429
        # The previous window's four fade as the window slides past them.
        clock.shift(timedelta(seconds=int(refused["Retry-After"])))
        assert attempt(client, admin_user.username, PASSWORD).status_code == 302


def test_a_successful_login_clears_its_count(client, admin_user):
    for _ in range(4):
        attempt(client, admin_user.username)
    assert attempt(client, admin_user.username, PASSWORD).status_code == 302
    client.logout()

    for _ in range(4):
        attempt(client, admin_user.username)
    assert attempt(client, admin_user.username, PASSWORD).status_code == 302


def test_logins_and_lockouts_are_audited(client, admin_user):
    attempt(client, admin_user.username, PASSWORD)
    (login,) = AuditEvent.objects.filter(action="user.login")
    assert login.actor_id == admin_user.pk and login.after == {"address": "127.0.0.1"}
    client.logout()

    for _ in range(7):
        attempt(client, admin_user.username)

    (locked,) = AuditEvent.objects.filter(action="user.login_locked")
    assert locked.after == {"username": admin_user.username, "address": "127.0.0.1"}


def test_a_trusted_proxys_client_header_tells_clients_apart(client, admin_user, settings):
    settings.LOGIN_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    for _ in range(5):
        attempt(client, admin_user.username, headers={"X-Real-IP": "203.0.113.7"})

    assert (
        attempt(
            client, admin_user.username, PASSWORD, headers={"X-Real-IP": "203.0.113.7"}
        ).status_code
        == 429
    )
    assert (
        attempt(
            client, admin_user.username, PASSWORD, headers={"X-Real-IP": "198.51.100.4"}
        ).status_code
        == 302
    )


def test_with_a_forwarded_for_list_the_proxys_own_entry_counts(client, admin_user, settings):
    settings.LOGIN_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    for n in range(5):  # the client forges a new first entry each time
        attempt(
            client, admin_user.username, headers={"X-Forwarded-For": f"10.9.9.{n}, 203.0.113.7"}
        )

    forged = {"X-Forwarded-For": "10.9.9.99, 203.0.113.7"}
    assert attempt(client, admin_user.username, PASSWORD, headers=forged).status_code == 429


def test_a_console_sign_in_lasts_a_working_day(client, admin_user):
    response = attempt(client, admin_user.username, PASSWORD)

    assert response.cookies["sessionid"]["max-age"] == 8 * 3600


def test_a_lockout_is_audited_once_a_window_however_the_estimate_slides(client, admin_user):
    import time

    with time_machine.travel(_window_start(899), tick=False) as clock:
        first = time.time() // 900
        for _ in range(5):
            attempt(client, admin_user.username)
        for _ in range(8):  # a guess each time the limit lets one through
            refused = attempt(client, admin_user.username, "still wrong")
            clock.shift(timedelta(seconds=max(int(refused.get("Retry-After", 0)), 1)))
        windows = time.time() // 900 - first + 1
    locked = AuditEvent.objects.filter(action="user.login_locked").count()
    assert 1 <= locked <= windows < 8
