"""Decision tests run against both state stores: the local fallback and real Redis."""

import json
import os
import uuid

import pytest
from django.db import transaction

from governance.decisions.runtime import runtime, runtime_reset
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import Tool

TEST_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/7"
DECIDE_URL = "/api/v1/decisions"


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.3).ping())
    except (redis.exceptions.RedisError, OSError):
        return False


@pytest.fixture(autouse=True)
def _decision_runtime(settings):
    settings.DECISIONS_LOG_BACKGROUND = False
    settings.DECISIONS_VERSION_LISTENER = False  # one test turns it on
    settings.DECISIONS_REDIS_URL = ""
    settings.REDIS_URL = ""
    runtime_reset()
    yield
    runtime_reset()


@pytest.fixture
def redis_state(settings):
    if not redis_reachable():
        pytest.skip("no Redis reachable")
    import redis

    prefix = f"mandate-test:{uuid.uuid4().hex[:12]}:"
    settings.DECISIONS_REDIS_URL = TEST_REDIS_URL
    settings.DECISIONS_REDIS_PREFIX = prefix
    runtime_reset()
    yield
    client = redis.Redis.from_url(TEST_REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["local", "redis"])
def state(request):
    """Run the test once on the local fallback and once on Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_state")
    return request.param


def tool(slug: str) -> Tool:
    return Tool.objects.get(slug=slug)


@pytest.fixture
def decide_secret(db):
    return service_token_create(name="gateway", scopes=["decide"], all_workloads=True).secret


@pytest.fixture
def triage(db):
    """An active workload holding web-search, file-read and code-exec (the trifecta's parts)."""
    workload = ClassifiedWorkloadFactory(slug="triage")
    for slug in ("web-search", "file-read", "code-exec", "crm-api"):
        EntitlementFactory(workload=workload, tool=tool(slug))
    return workload


def post(client, secret, body, **extra):
    return client.post(
        DECIDE_URL,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        **extra,
    )


def ask(client, secret, workload="triage", tool="web-search", session=None, **more):
    body = {"workload": workload, "tool": tool, **more}
    if session is not None:
        body["session"] = session
    response = post(client, secret, body)
    assert response.status_code == 200, response.content
    return response.json()


def commit_changes():
    """Run the on-commit announcement the test transaction would never reach."""
    transaction.get_connection().run_on_commit.clear()
    from governance.decisions.runtime import policy_version_announce

    policy_version_announce()


def flush_log() -> int:
    return runtime().log.flush()
