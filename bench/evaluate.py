#!/usr/bin/env python
"""Evaluation benchmark (PostgreSQL).

  DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate uv run python bench/evaluate.py \
      [--history 1000000] [--new 10000] [--rounds 3] [--workers 2] [--broker redis://127.0.0.1:6379/14]

Works in its own database, `<DATABASE_URL's name>_bench` (created and migrated if missing; its
usage tables are truncated each run). Prints:
  1. time to evaluate N new events with no history, and with H events of history already
     evaluated, side by side with the ratio (target ≤ 1.2x: cost follows new events, not history),
     the median of --rounds pairs run back to back
  2. events/s evaluated by real Celery worker processes, one task per 500 events (task count
     printed). Skip with --workers 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
EVENTS_PER_SESSION = 20
TASK_EVENTS = 500


def bench_url(url: str) -> str:
    parts = urlparse(url)
    name = parts.path.lstrip("/") or "mandate"
    if not name.endswith("_bench"):
        name += "_bench"
    return urlunparse(parts._replace(path=f"/{name}"))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnop")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def prepare_catalogue():
    """One active internal-read workload with three grants (send-email stays unentitled)."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from workloads.models import Entitlement, SensitivityTier, SessionPolicy, Tool, Workload

    owner, _ = get_user_model().objects.get_or_create(username="bench-owner")
    workload, _ = Workload.objects.get_or_create(
        slug="bench-agent",
        defaults=dict(
            name="Bench agent",
            purpose="Summarise support tickets and draft replies for agents.",
            owner=owner,
            model_family="o1",
            environment="production",
            status="active",
            tier=SensitivityTier.objects.get(slug="internal-read"),
        ),
    )
    SessionPolicy.objects.get_or_create(workload=workload)
    for slug in ("crm-api", "sql-query", "file-read"):
        Entitlement.objects.get_or_create(
            workload=workload,
            tool=Tool.objects.get(slug=slug),
            status="active",
            defaults={"valid_from": timezone.now() - timedelta(days=400)},
        )
    return workload


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE workloads_usageevent, workloads_session, governance_finding, "
            "governance_findingcomment, governance_containmentaction RESTART IDENTITY CASCADE"
        )


def representative_state() -> dict:
    """The JSON state a 20-event session carries (what each history session holds)."""
    from datetime import UTC, datetime, timedelta

    from governance.evaluation.detectors import EventData, Limits, PolicySnapshot
    from governance.evaluation.engine import evaluate_session_batch

    # Recent, so continuing sessions are neither idle nor overrun: same findings as fresh ones.
    t0 = datetime.now(UTC) - timedelta(seconds=150)
    tools = ("crm-api", "sql-query", "file-read")
    events = [
        EventData(
            id=i + 1,
            type="tool_call" if i % 2 else "reasoning_step",
            occurred_at=t0 + timedelta(seconds=i),
            tool=tools[i % 3] if i % 2 else "",
            arguments_hash=f"{i:064x}",
            content="" if i % 2 else f"thinking about step {i}",
            reasoning_tokens=0 if i % 2 else 50,
        )
        for i in range(EVENTS_PER_SESSION)
    ]
    snapshot = PolicySnapshot(workload_status="active", limits=Limits(loop_threshold=3))
    state, _ = evaluate_session_batch(None, events, snapshot, request="Summarise ticket 4411")
    return state


def load_sessions(workload_id: int, count: int, *, first: int, state: dict, age: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO workloads_session (workload_id, external_id, source, original_request,
                final_action, started_at, last_event_at, ended_at, created_at, evaluation_state)
            SELECT %s, 'run-' || g, 'native', 'Summarise ticket ' || g || ' for the agent', '',
                now() - %s::interval, now() - %s::interval + interval '30 seconds', NULL,
                now() - %s::interval, %s::jsonb
            FROM generate_series(%s, %s) AS g
            """,
            [workload_id, age, age, age, json.dumps(state), first, first + count - 1],
        )


def load_events(
    workload_id: int, count: int, *, first_session: int, prefix: str, evaluated: bool, age: str
) -> None:
    """`count` events, EVENTS_PER_SESSION per session from `first_session` on, in one
    INSERT … SELECT over generate_series (fast: no Python per row)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH stored AS (
            INSERT INTO workloads_usageevent (workload_id, session_id, event_id, type, occurred_at,
                received_at, tool, tool_call_id, arguments_hash, content, input_tokens,
                output_tokens, reasoning_tokens, duration_ms, attributes)
            SELECT %(w)s,
                %(s0)s + (g / %(per)s),
                %(prefix)s || g,
                CASE WHEN g %% %(per)s = 0 THEN 'session_start'
                     WHEN g %% %(per)s = %(per)s - 1 THEN 'final_action'
                     WHEN g %% 2 = 1 THEN 'tool_call' ELSE 'reasoning_step' END,
                now() - %(age)s::interval + (g %% %(per)s) * interval '1 second',
                now(),
                CASE WHEN g %% 2 = 1 AND g %% %(per)s <> %(per)s - 1 THEN
                    (ARRAY['crm-api','sql-query','file-read','send-email'])[1 + (g / 2) %% 4]
                    ELSE '' END,
                '',
                md5((g %% 50)::text),
                CASE WHEN g %% %(per)s = 0 THEN 'Summarise ticket ' || g || ' for the agent'
                     WHEN g %% %(per)s = %(per)s - 1 THEN 'Drafted a reply to ticket ' || g
                     WHEN g %% 2 = 0 THEN 'Reasoning about step ' || g ELSE '' END,
                100, 40, CASE WHEN g %% 2 = 0 THEN 50 ELSE 0 END, 120, '{}'::jsonb
            FROM generate_series(0, %(n)s - 1) AS g
            RETURNING id
            )
            SELECT min(id), max(id) FROM stored
            """,
            {
                "w": workload_id,
                "s0": first_session,
                "per": EVENTS_PER_SESSION,
                "prefix": prefix,
                "age": age,
                "n": count,
            },
        )
        low, high = cursor.fetchone()
        if evaluated:  # history: off the pending list the insert trigger put it on
            cursor.execute(
                "DELETE FROM workloads_pendingevaluation WHERE event_id BETWEEN %s AND %s",
                [low, high],
            )
        cursor.execute("ANALYZE workloads_usageevent; ANALYZE workloads_session")


def settle() -> None:
    """Vacuum and checkpoint after loading, so neither scenario times the load's aftermath
    (hint-bit writes, a checkpoint flushing the bulk insert)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) workloads_usageevent")
        cursor.execute("VACUUM (ANALYZE) workloads_session")
        cursor.execute("CHECKPOINT")


def unevaluated_range() -> tuple[int, int]:
    from django.db.models import Max, Min

    from workloads.models import PendingEvaluation

    r = PendingEvaluation.objects.aggregate(lo=Min("event_id"), hi=Max("event_id"))
    return r["lo"], r["hi"]


def time_evaluation() -> tuple[float, int, int]:
    from governance.evaluation.services import events_evaluate

    lo, hi = unevaluated_range()
    started = time.perf_counter()
    result = events_evaluate(min_id=lo, max_id=hi, batch=TASK_EVENTS)
    return time.perf_counter() - started, result.events, result.findings


def scenario(workload, *, history: int, new: int) -> tuple[float, int, int]:
    truncate()
    history_sessions = history // EVENTS_PER_SESSION
    if history:
        t = time.perf_counter()
        load_sessions(
            workload.id, history_sessions, first=1, state=representative_state(), age="2 days"
        )
        load_events(workload.id, history, first_session=1, prefix="h", evaluated=True, age="2 days")
        print(f"  loaded {history:,} history events in {time.perf_counter() - t:.1f} s")
    new_sessions = new // EVENTS_PER_SESSION
    # With history, half the new events continue existing sessions (their state is read from
    # the session row, never from their history); the rest open new sessions.
    continuing = new_sessions // 2 if history_sessions >= new_sessions // 2 else 0
    fresh = new_sessions - continuing
    load_sessions(workload.id, fresh, first=history_sessions + 1, state={}, age="1 minute")
    if continuing:
        load_events(
            workload.id,
            continuing * EVENTS_PER_SESSION,
            first_session=1,
            prefix="c",
            evaluated=False,
            age="1 minute",
        )
    load_events(
        workload.id,
        fresh * EVENTS_PER_SESSION,
        first_session=history_sessions + 1,
        prefix="n",
        evaluated=False,
        age="1 minute",
    )
    settle()
    return time_evaluation()


def celery_throughput(workload, *, events: int, workers: int, broker: str) -> None:
    from celery import Celery
    from django.db import connection

    from workloads.models import PendingEvaluation

    truncate()
    sessions = events // EVENTS_PER_SESSION
    load_sessions(workload.id, sessions, first=1, state={}, age="1 minute")
    load_events(workload.id, events, first_session=1, prefix="w", evaluated=False, age="1 minute")
    settle()
    lo, hi = unevaluated_range()
    env = {**os.environ, "CELERY_BROKER_URL": broker, "DATABASE_POOL": "0"}
    log = Path(tempfile.mkstemp(prefix="mandate-bench-worker-", suffix=".log")[1])
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "governance",
                "worker",
                "--pool=prefork",
                f"--concurrency={workers}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        client = Celery(broker=broker)
        client.control.ping(timeout=0.5)
        deadline = time.monotonic() + 60
        while not client.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker did not start:\n{log.read_text()[-2000:]}")
        connection.close()
        started = time.perf_counter()
        tasks = 0
        for low in range(lo, hi + 1, TASK_EVENTS):
            client.send_task(
                "mandate.evaluate_events",
                kwargs={"min_id": low, "max_id": min(low + TASK_EVENTS - 1, hi)},
            )
            tasks += 1
        while PendingEvaluation.objects.exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.unlink(missing_ok=True)
    print(
        f"Celery: {events:,} events in {tasks} tasks (≤ {TASK_EVENTS} events each) by "
        f"{workers} worker process(es): {elapsed:.2f} s = {events / elapsed:,.0f} events/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--history", type=int, default=1_000_000, help="history events (1M)")
    parser.add_argument("--new", type=int, default=10_000, help="new events to evaluate (10k)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (0: skip)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="pairs of runs, without and with history; the ratio is their median (3)",
    )
    parser.add_argument(
        "--broker", default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server (the bench uses <name>_bench).")
    url = bench_url(url)
    ensure_database(url)
    setup_django(url)
    workload = prepare_catalogue()

    print(
        f"Database {urlparse(url).path.lstrip('/')}; {args.new:,} new events, "
        f"{EVENTS_PER_SESSION} per session, {TASK_EVENTS} per transaction"
    )
    scenario(workload, history=0, new=TASK_EVENTS)  # warm-up: imports, plans, connections
    # A run takes about a second, so one pair says more about the machine's moment than about
    # history: each round runs both, back to back, and the report takes the median ratio.
    rounds = []
    for _ in range(max(args.rounds, 1)):
        base, base_events, base_findings = scenario(workload, history=0, new=args.new)
        hist, hist_events, hist_findings = scenario(workload, history=args.history, new=args.new)
        rounds.append((hist / base, base, hist))
        print(f"  round {len(rounds)}: {base:.2f} s without, {hist:.2f} s with: {hist / base:.2f}x")
    ratio, base, hist = sorted(rounds)[len(rounds) // 2]
    print()
    print(f"{'':28}{'no history':>14}{f'{args.history:,} history':>20}")
    print(f"{'events evaluated':28}{base_events:>14,}{hist_events:>20,}")
    print(f"{'findings raised':28}{base_findings:>14,}{hist_findings:>20,}")
    print(f"{'time (s)':28}{base:>14.2f}{hist:>20.2f}")
    print(f"{'events/s':28}{base_events / base:>14,.0f}{hist_events / hist:>20,.0f}")
    print(
        f"ratio with history / without: {ratio:.2f}x, the median of {len(rounds)} rounds "
        f"({min(r[0] for r in rounds):.2f}-{max(r[0] for r in rounds):.2f}; target <= 1.2x) "
        f"{'OK' if ratio <= 1.2 else 'OVER TARGET'}"
    )
    if args.workers:
        print()
        celery_throughput(workload, events=args.new, workers=args.workers, broker=args.broker)


if __name__ == "__main__":
    main()
