"""The bench's floor views: routed only for the bench, and doing what their names say."""

import json

import pytest

from tests.decisions.conftest import ask

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


def test_the_script_floor_runs_the_session_script_on_the_checks_session(
    client, settings, decide_secret, triage, state
):
    settings.DECISIONS_BENCH_FLOORS = True
    floor(client, "/bench/floor/script")
    floor(client, "/bench/floor/script")
    answer = ask(client, decide_secret, tool="crm-api", session="s")
    assert answer["obligations"]["tool_calls_left"] == 100 - 3  # two by the floor, one here
