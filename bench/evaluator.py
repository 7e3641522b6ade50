"""In-process decision time: Mandate's evaluator vs cedarpy's is_authorized, same requests.

    uv run python bench/evaluator.py [--requests 2000]

Catalogues of 50 and 5,000 workloads (50 tools, 10 grants a workload), built in memory as
plain rows (no database). Mandate: `static_verdict` on the compiled snapshot (the part of a
decision that runs in process; the session half is the Redis script, timed by
bench/decisions.py). cedarpy: `is_authorized` on the exported Cedar policies and entities,
both parsed once beforehand (PolicySet / Entities handles), so only evaluation is timed.
Targets (issue 7): Mandate <= 0.05x cedarpy; Mandate at 5,000 <= 1.5x itself at 50.
"""

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cedarpy

from governance.decisions.evaluator import static_verdict
from governance.decisions.export import cedar_entities, cedar_policies, cedar_request
from governance.decisions.snapshot import INF, snapshot_build

TOOLS = 50
GRANTS_PER_WORKLOAD = 10
NOW = 1_800_000_000
# Best of this many interleaved rounds: the figures are ~1 µs, and a shared VM moves them
# by more than the gap between the sizes from one round to the next.
ROUNDS = 9


def catalogue(n_workloads: int, rng: random.Random):
    tools = [{"slug": f"tool-{i}", "capability": "downstream_api"} for i in range(TOOLS)]
    workloads, grants = [], []
    for w in range(n_workloads):
        slug = f"workload-{w}"
        status = "active" if rng.random() < 0.9 else rng.choice(["suspended", "draft"])
        workloads.append(
            {
                "slug": slug,
                "status": status,
                "classified": True,
                "max_session_seconds": 1800,
                "idle_timeout_seconds": 300,
                "max_tool_calls": 100,
            }
        )
        for t in rng.sample(range(TOOLS), GRANTS_PER_WORKLOAD):
            start = NOW - rng.randint(0, 10**6)
            end = INF if rng.random() < 0.5 else NOW + rng.randint(-(10**5), 10**6)
            grants.append(
                {"workload": slug, "tool": f"tool-{t}", "valid_from": start, "valid_until": end}
            )
    return snapshot_build(version=1, workloads=workloads, tools=tools, grants=grants, rules=[])


def requests(n_workloads: int, count: int, rng: random.Random):
    return [
        (f"workload-{rng.randrange(n_workloads)}", f"tool-{rng.randrange(TOOLS)}")
        for _ in range(count)
    ]


def time_mandate(snapshot, reqs) -> tuple[float, list[bool]]:
    answers = [static_verdict(snapshot, None, w, t, None, NOW).decision == "allow" for w, t in reqs]
    best = INF
    for _ in range(5):
        started = time.perf_counter()
        for w, t in reqs:
            static_verdict(snapshot, None, w, t, None, NOW)
        best = min(best, time.perf_counter() - started)
    return best / len(reqs) * 1e6, answers


def time_cedar(snapshot, reqs) -> tuple[float, list[bool]]:
    policies = cedarpy.PolicySet.from_str(cedar_policies(snapshot))
    entities = cedarpy.Entities.from_json_str(json.dumps(cedar_entities(snapshot)))
    cedar_reqs = [cedar_request(w, t, NOW) for w, t in reqs]
    started = time.perf_counter()
    answers = [cedarpy.is_authorized(r, policies, entities).allowed for r in cedar_reqs]
    return (time.perf_counter() - started) / len(reqs) * 1e6, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cedar-requests", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"python {platform.python_version()} on {platform.machine()}, cedarpy")
    print(f"{'workloads':>9} {'mandate µs':>11} {'cedarpy µs':>11} {'ratio':>7} {'agree':>6}")
    sizes = (50, 5000)
    cases = {}
    for n in sizes:
        snapshot = catalogue(n, rng)
        cases[n] = (snapshot, requests(n, args.requests, rng))
    # Mandate first, the sizes interleaved (best of rounds): the machine may be shared.
    results = {n: INF for n in sizes}
    answers = {}
    for _round in range(ROUNDS):
        for n in sizes:
            us, answers[n] = time_mandate(*cases[n])
            results[n] = min(results[n], us)
    for n in sizes:
        snapshot, reqs = cases[n]
        cedar_reqs = reqs[: args.cedar_requests]
        cedar_us, cedar_answers = time_cedar(snapshot, cedar_reqs)
        agree = answers[n][: len(cedar_reqs)] == cedar_answers
        ratio = results[n] / cedar_us
        print(f"{n:>9} {results[n]:>11.2f} {cedar_us:>11.1f} {ratio:>7.4f} {agree!s:>6}")
    print(f"mandate at 5,000 / at 50: {results[5000] / results[50]:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
