"""The fixed cast: one user per role, plus an outsider with no role."""

import pytest
from django.contrib.auth.models import Group

from governance.roles import APPROVER, AUDITOR, IAM_ADMIN, OWNER, REVIEWER
from tests.factories import UserFactory

pytest_plugins = ["tests.ci_guard"]

ROLE_USERS = {
    "admin": IAM_ADMIN,
    "owner": OWNER,
    "approver": APPROVER,
    "reviewer": REVIEWER,
    "auditor": AUDITOR,
    "outsider": None,
}


def make_user(name: str, role: str | None):
    user = UserFactory(username=name)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def cast(db):
    return {name: make_user(name, role) for name, role in ROLE_USERS.items()}


@pytest.fixture
def admin_user(cast):
    return cast["admin"]


@pytest.fixture
def owner(cast):
    return cast["owner"]


@pytest.fixture
def approver(cast):
    return cast["approver"]


@pytest.fixture
def reviewer(cast):
    return cast["reviewer"]


@pytest.fixture
def auditor(cast):
    return cast["auditor"]


@pytest.fixture
def outsider(cast):
    return cast["outsider"]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _live_server_one_request_at_a_time_on_in_memory_sqlite(django_db_setup):
    """An in-memory SQLite test database is a single connection, which Django's live server
    shares with its request threads: two requests at once (htmx fires several) corrupt each
    other's cursors ('IndexError' deep in the ORM, a 500 in a browser test now and then).
    There the live server answers one request at a time; on PostgreSQL it stays threaded."""
    from django.core.servers.basehttp import WSGIServer
    from django.db import connection
    from django.test.testcases import LiveServerThread

    class OneAtATime(WSGIServer):
        def __init__(self, *args, connections_override=None, **kwargs):
            super().__init__(*args, **kwargs)  # the serving thread already uses the override

    threaded = LiveServerThread.server_class
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        LiveServerThread.server_class = OneAtATime
    yield
    LiveServerThread.server_class = threaded


TRANSACTIONAL_FIXTURES = {"transactional_db", "live_server", "django_db_reset_sequences"}


@pytest.fixture(autouse=True)
def _evaluation_snapshots_fresh():
    """Tests build catalogue rows with factories (no policy version bump): let no compiled
    policy snapshot outlive the test that compiled it."""
    from governance.evaluation.snapshot import snapshot_cache_clear

    snapshot_cache_clear()
    yield
    snapshot_cache_clear()


def _is_transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    if TRANSACTIONAL_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """A transactional test (live_server, real workers) ends by flushing every table, which
    takes the rows data migrations seeded with it; put them back for the tests that follow.
    A hook, not a fixture: it must run after pytest-django's own teardown has flushed."""
    result = yield
    # After the last test the session's teardown has already dropped the test database,
    # unless it is kept for the next run (--reuse-db).
    kept = nextitem is not None or item.config.getoption("reuse_db", False)
    if _is_transactional(item) and kept:
        from pytest_django.plugin import blocking_manager_key

        from governance.models import PolicyState
        from governance.roles import roles_sync
        from workloads.seed import seed_reference_data

        with item.config.stash[blocking_manager_key].unblock():
            seed_reference_data()
            PolicyState.objects.get_or_create(id=1)
            roles_sync()
    return result
