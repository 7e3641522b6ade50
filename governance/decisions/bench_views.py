"""The benchmark's floors, served by the same server and fast path as the decision endpoint.

Only routed when MANDATE_BENCH_FLOORS=1 (settings.DECISIONS_BENCH_FLOORS), which only
bench/decisions.py sets: a deployment never exposes them.
"""

import time

import msgspec
from django.http import JsonResponse

from governance.decisions.evaluator import SessionPlan
from governance.decisions.runtime import runtime

FLOOR_SESSIONS = "bench-floor:"
_BODY = {"decision": "allow", "reasons": [], "policy_version": 0, "obligations": {}}


def floor_trivial(request):
    """The least a JSON answer costs: a constant JsonResponse."""
    return JsonResponse(_BODY)


def floor_state(request):
    """The trivial floor plus ONE Redis round trip: an EVALSHA of a script that only returns."""
    runtime().store.floor()
    return JsonResponse(_BODY)


def floor_script(request):
    """The state floor with the session check's own script in place of `return 1`, called
    with the keys and arguments of the check in the body, and none of the decision around
    it (no token, no verdict, no answer, no log). Not a target: it splits the session
    check's cost into the script's and the decision's (bench/README.md). It answers without
    a token, so its sessions live apart from real ones (FLOOR_SESSIONS in their keys)."""
    check = msgspec.json.decode(request.body)
    rt = runtime()
    snapshot = rt.holder.current()
    plan = SessionPlan(
        workload=FLOOR_SESSIONS + check["workload"],
        session=check["session"],
        max_session_seconds=3600,
        idle_timeout_seconds=3600,
        max_tool_calls=10**9,
        labels=snapshot.tools[check["tool"]][1],
        rules=(),
        log_level="metadata",
    )
    rt.store.check([(plan, time.time())], snapshot.version)
    return JsonResponse(_BODY)


FLOOR_ROUTES = {
    "/bench/floor/trivial": floor_trivial,
    "/bench/floor/state": floor_state,
    "/bench/floor/script": floor_script,
}
