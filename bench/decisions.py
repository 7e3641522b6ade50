"""The decision endpoint under load, next to its two floors, served by the same server.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_bench \\
    REDIS_URL=redis://127.0.0.1:6379/7 uv run python bench/decisions.py [--duration 8]

Starts gunicorn (2 sync workers, the production server) with MANDATE_BENCH_FLOORS=1, which
routes the two floor views through the same fast path as the endpoint (they are never routed
otherwise), seeds a bench workload, a token and a big session budget, then runs wrk on
loopback at 16 and 32 connections for each of:
  trivial  — a constant JsonResponse                       (/bench/floor/trivial)
  state    — the same plus ONE EVALSHA of `return 1`       (/bench/floor/state)
  nosess   — a sessionless decision                        (/api/v1/decisions)
  session  — a session check: one Lua check-and-record     (/api/v1/decisions, 7,000 sessions)
  script   — the state floor running the session script     (/bench/floor/script, no target:
             the script's share of a session check, next to the decision's)
with token auth and the decision log on, and a second server beside it with DECISIONS_LOG=0
to measure the log's cost. Each ratio comes from pairs of back-to-back runs (see `measure`).
Prints requests/s, p50, p99 and the ratios the issue sets targets for.
Needs wrk (`apt-get install -y wrk`), PostgreSQL and Redis.
"""

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Two servers side by side: the decision log on, and off (to measure what it costs).
PORTS = {True: 8765, False: 8766}
WORKLOAD = "bench-agent"
TOOL = "crm-api"
PREFIX = "mandate-bench:"


def env_for_server(log: bool) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "governance.settings",
            "SECRET_KEY": env.get("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijkl"),
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "MANDATE_BENCH_FLOORS": "1",
            "DECISIONS_LOG": "1" if log else "0",
            "DECISIONS_REDIS_PREFIX": PREFIX,
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def seed() -> str:
    """Migrate, create the bench workload, grant and token; return the token's secret."""
    os.environ.update(env_for_server(log=True))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from governance.models import ServiceToken
    from governance.policy_version import policy_version_bump
    from governance.tokens import service_token_create
    from workloads.models import Entitlement, SensitivityTier, SessionPolicy, Tool, Workload

    with transaction.atomic():
        owner, _ = get_user_model().objects.get_or_create(username="bench-owner")
        workload, _ = Workload.objects.update_or_create(
            slug=WORKLOAD,
            defaults={
                "name": "Bench agent",
                "purpose": "Benchmarks",
                "owner": owner,
                "model_family": "o1",
                "environment": "staging",
                "status": "active",
                "tier": SensitivityTier.objects.get(slug="internal-act"),
            },
        )
        SessionPolicy.objects.update_or_create(
            workload=workload,
            defaults={
                "max_tool_calls": 10**9,
                "max_session_seconds": 3600,
                "idle_timeout_seconds": 3600,
            },
        )
        tool = Tool.objects.get(slug=TOOL)
        if not Entitlement.objects.filter(workload=workload, tool=tool, status="active").exists():
            Entitlement.objects.create(workload=workload, tool=tool)
        ServiceToken.objects.filter(name="bench").delete()
        secret = service_token_create(name="bench", scopes=["decide"], all_workloads=True).secret
        policy_version_bump()
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    keys = list(client.scan_iter(match=f"{PREFIX}*"))
    if keys:
        client.delete(*keys)
    return secret


def start_server(log: bool, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "governance.wsgi:application",
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env_for_server(log), start_new_session=True)
    # Ready when both workers answer (each imports Django and the URLconf on its own).
    deadline = time.time() + 90
    answered = 0
    while time.time() < deadline and answered < 8:
        try:
            url = f"http://127.0.0.1:{port}/bench/floor/trivial"
            with urllib.request.urlopen(urllib.request.Request(url, data=b""), timeout=30):
                answered += 1
        except (OSError, urllib.error.URLError):
            time.sleep(0.5)
    if answered >= 8:
        return server
    stop_server(server)
    raise RuntimeError("gunicorn did not start")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {secret}"
local sessions = {sessions}
local counter = 0
if sessions == 0 then
  wrk.body = '{body}'
else
  request = function()
    counter = counter + 1
    local body = '{{"workload":"{workload}","tool":"{tool}","session":"s-' ..
      (counter % sessions) .. '-' .. math.random(1, 1000000000) % 7 .. '"}}'
    return wrk.format(nil, nil, nil, body)
  end
end
"""

# Each floor is driven exactly like the decision it is compared with: the state floor gets the
# session check's per-request script (wrk spends CPU building those bodies, on the same two
# cores), the trivial floor the sessionless check's fixed body. Only the server's work differs.
SCENARIOS = {
    "trivial": ("/bench/floor/trivial", 0),
    "state": ("/bench/floor/state", 1000),
    "nosess": ("/api/v1/decisions", 0),
    "session": ("/api/v1/decisions", 1000),
    "script": ("/bench/floor/script", 1000),
}


def wrk_script(secret: str, sessions: int) -> str:
    body = f'{{"workload":"{WORKLOAD}","tool":"{TOOL}"}}'
    text = WRK_SCRIPT.format(
        secret=secret, sessions=sessions, body=body, workload=WORKLOAD, tool=TOOL
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(text)
    return handle.name


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, path: str, script: str, connections: int, duration: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            script,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


def warm(port: int, path: str, secret: str) -> None:
    body = f'{{"workload":"{WORKLOAD}","tool":"{TOOL}","session":"warm"}}'.encode()
    for _ in range(20):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


# What each target compares: (baseline, measured), each a (scenario, decision log on?) run.
# The log's comparisons use the sessionless and session checks at 16 connections only.
COMPARISONS = {
    "sessionless / trivial": (("trivial", True), ("nosess", True)),
    "session / state": (("state", True), ("session", True)),
    "log on / off, sessionless": (("nosess", False), ("nosess", True)),
    "log on / off, session": (("session", False), ("session", True)),
    "script alone / state": (("state", True), ("script", True)),
}
# Run at 16 connections only: the log's cost, and the session script's share of a check.
LOG_COMPARISONS_AT = 16


def measure(secret: str, connections, duration: int, rounds: int):
    """Each comparison run as a pair, its two runs back to back.

    The machine's speed drifts by more than the gaps being measured (bench/README.md): a
    ratio of two runs minutes apart says more about the drift than about the code. So each
    ratio is taken within a pair of adjacent runs, the pair's order alternating between
    rounds, and the report gives the median over the rounds with its spread.
    Returns ({(scenario, log, conns): [run, ...]}, {(comparison, conns): [(base, measured)]}).
    """
    servers: dict = {}
    scripts = {name: wrk_script(secret, sessions) for name, (_path, sessions) in SCENARIOS.items()}
    runs: dict = {}
    pairs: dict = {}
    try:
        for log in (True, False):
            servers[log] = start_server(log, PORTS[log])  # inside: a failed start stops both
        for log in servers:
            for path, _sessions in SCENARIOS.values():
                warm(PORTS[log], path, secret)
        for round_number in range(rounds):
            for c in connections:
                names = [
                    name
                    for name, (base, _measured) in COMPARISONS.items()
                    if c == LOG_COMPARISONS_AT
                    or name in ("sessionless / trivial", "session / state")
                ]
                shift = round_number % len(names)  # no comparison always runs first
                for name in [*names[shift:], *names[:shift]]:
                    pair = COMPARISONS[name]
                    ordered = pair if round_number % 2 == 0 else pair[::-1]
                    results = {}
                    for scenario, log in ordered:
                        path, _sessions = SCENARIOS[scenario]
                        run = run_wrk(PORTS[log], path, scripts[scenario], c, duration)
                        runs.setdefault((scenario, log, c), []).append(run)
                        results[scenario, log] = run
                        time.sleep(0.6)  # the log writer lands what it buffered (500 ms)
                    pairs.setdefault((name, c), []).append((results[pair[0]], results[pair[1]]))
        return runs, pairs
    finally:
        for server in servers.values():
            stop_server(server)
        for script in scripts.values():
            os.unlink(script)


def paired_ratios(pairs: list[tuple[dict, dict]], key: str) -> tuple[float, float, float]:
    """(median, lowest, highest) of measured ÷ baseline over the pairs."""
    ratios = sorted(measured[key] / base[key] for base, measured in pairs)
    return statistics.median(ratios), ratios[0], ratios[-1]


TARGETS = {"rps": (">=", None), "p50": ("<=", 1.25), "p99": ("<=", 1.5)}
RPS_TARGETS = {
    "sessionless / trivial": 0.90,
    "session / state": 0.85,
    "log on / off, sessionless": 0.90,
    "log on / off, session": 0.90,
}


def report_ratios(pairs: dict) -> None:
    print("\nratios, median of paired runs (lowest-highest); the target in brackets")
    for (name, c), runs in pairs.items():
        parts = []
        for key in ("rps", "p50", "p99"):
            if name not in RPS_TARGETS:  # a diagnostic: figures, no target
                if key == "rps":
                    median, low, high = paired_ratios(runs, key)
                    parts.append(f"{key} {median:.2f} ({low:.2f}-{high:.2f}) [no target]")
                continue
            if name.startswith("log") and key != "rps":
                continue
            op, target = TARGETS[key]
            target = RPS_TARGETS[name] if key == "rps" else target
            median, low, high = paired_ratios(runs, key)
            met = median >= target if op == ">=" else median <= target
            verdict = "" if met else " MISSED"
            parts.append(f"{key} {median:.2f} ({low:.2f}-{high:.2f}) [{op}{target}]{verdict}")
        print(f"  c={c:<3}{name:<27}" + "  ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description="Decision endpoint vs its floors")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="pairs per comparison")
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the bench migrates and seeds it).")
    secret = seed()
    connections = (16, 32)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}; gunicorn 2 sync workers; wrk -t2 on loopback; "
        f"{args.rounds} rounds of {args.duration}s runs; load average {os.getloadavg()[0]:.1f}"
    )
    runs, pairs = measure(secret, connections, args.duration, args.rounds)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM governance_decision")
        logged = cursor.fetchone()[0]
        # Mandate's own time per decision, as the log records it (view entry to response).
        cursor.execute(
            "SELECT session <> '', percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_us), "
            "percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_us) FROM governance_decision "
            "WHERE token_id = (SELECT id FROM governance_servicetoken WHERE name = 'bench') "
            "GROUP BY 1 ORDER BY 1"
        )
        own_time = cursor.fetchall()

    print(
        f"\n{'scenario':<15}{'conns':>6}{'best req/s':>11}{'median':>8}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}"
    )
    for (name, log, c), results in runs.items():
        label = name if log else f"{name}, no log"
        best = max(results, key=lambda run: run["rps"])
        median = statistics.median(run["rps"] for run in results)
        errors = sum(run["errors"] for run in results)
        print(
            f"{label:<15}{c:>6}{best['rps']:>11.0f}{median:>8.0f}"
            f"{best['p50']:>8.2f}{best['p99']:>8.2f}{errors:>8}"
        )
    report_ratios(pairs)
    print(f"  decision rows in the log after the run: {logged}")
    for with_session, p50, p99 in own_time:
        kind = "session check" if with_session else "sessionless"
        print(f"  Mandate's own time ({kind}, from the log): p50 {p50} µs, p99 {p99} µs")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    try:
        main()
    except (urllib.error.URLError, subprocess.CalledProcessError) as exc:
        sys.exit(f"bench failed: {exc}")
