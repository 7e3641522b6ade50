"""The bench's floor views: routed only for the bench, and doing what their names say."""

import json
import time

import pytest

from governance.decisions.evaluator import SessionPlan
from governance.decisions.runtime import runtime
from tests.decisions.conftest import ask


def version() -> int:
    return runtime().holder.current().version


pytestmark = pytest.mark.django_db
FLOORS = ("/bench/floor/trivial", "/bench/floor/state", "/bench/floor/script")
CHECK = {"workload": "triage", "tool": "crm-api", "session": "s"}


def floor(client, path):
    return client.post(path, data=json.dumps(CHECK), content_type="application/json")


@pytest.mark.parametrize("path", FLOORS)
def test_a_deployment_does_not_route_them(client, path):
    assert floor(client, path).status_code == 404


@pytest.mark.parametrize("path", FLOORS)
def test_the_bench_gets_a_constant_answer_from_each(client, settings, triage, state, path):
    settings.DECISIONS_BENCH_FLOORS = True
    response = floor(client, path)
    assert response.status_code == 200
    assert response.json() == {
        "decision": "allow",
        "reasons": [],
        "policy_version": 0,
        "obligations": {},
    }


def test_the_script_floor_runs_the_session_script_apart_from_real_sessions(
    client, settings, decide_secret, triage, state
):
    settings.DECISIONS_BENCH_FLOORS = True
    floor(client, "/bench/floor/script")
    floor(client, "/bench/floor/script")
    # Its two calls were recorded, under its own name: the real session is untouched.
    plan = SessionPlan("bench-floor:triage", "s", 3600, 3600, 10**9, ("crm",), (), "metadata")
    [(code, _detail, _started, calls)] = runtime().store.check([(plan, time.time())], version())
    assert (code, calls) == ("allowed", 3)
    answer = ask(client, decide_secret, tool="crm-api", session="s")
    assert answer["obligations"]["tool_calls_left"] == 100 - 1


def test_check_deploy_warns_while_the_floors_are_routed(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.DECISIONS_BENCH_FLOORS = True
    with pytest.raises(SystemCheckError, match=r"mandate\.W001"):
        call_command("check", deploy=True, fail_level="WARNING", tags=["security"])
