"""The benchmark's floors, served by the same server and fast path as the decision endpoint.

Only routed when MANDATE_BENCH_FLOORS=1 (settings.DECISIONS_BENCH_FLOORS), which only
bench/decisions.py sets: a deployment never exposes them.
"""

from django.http import JsonResponse

from governance.decisions.runtime import runtime

_BODY = {"decision": "allow", "reasons": [], "policy_version": 0, "obligations": {}}


def floor_trivial(request):
    """The least a JSON answer costs: a constant JsonResponse."""
    return JsonResponse(_BODY)


def floor_state(request):
    """The trivial floor plus ONE Redis round trip: an EVALSHA of a script that only returns."""
    runtime().store.floor()
    return JsonResponse(_BODY)


FLOOR_ROUTES = {"/bench/floor/trivial": floor_trivial, "/bench/floor/state": floor_state}
