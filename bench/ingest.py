"""Ingest throughput: the REST API in 1,000-event batches vs raw psycopg COPY, same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_ingest uv run python bench/ingest.py

Starts the production server (gunicorn, 2 sync workers) on loopback; 4 client processes each
POST pre-encoded 1,000-event batches to /api/v1/events. In the same run, 4 processes COPY the
same rows (pre-built tuples, sessions created beforehand) straight into the events table with
psycopg, committing every 1,000 (with the pending-list trigger off: see `_copy_rate`). Prints
events/s for both and the ratio (target >= 0.6).

The server publishes its evaluation messages to `memory://` unless --broker is given, so the
run neither needs nor pollutes a broker. Other benches call `api_ingest_rate()`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BATCH = 1000
CLIENTS = 4
SESSION_EVENTS = 50
MEMORY_BROKER = "memory://localhost/"
API_WORKLOAD = "bench-ingest-api"
COPY_WORKLOAD = "bench-ingest-copy"
PENDING_TRIGGER = "usage_event_pending"  # workloads/migrations/0012_pending_evaluation.py
COPY_COLUMNS = (
    "workload_id, session_id, event_id, type, occurred_at, received_at, tool, tool_call_id, "
    "arguments_hash, content, input_tokens, output_tokens, reasoning_tokens, duration_ms, "
    "attributes"
)


def _environment() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("bench/ingest.py needs DATABASE_URL=postgres://… (PostgreSQL).")


def _database_ensure() -> None:
    """Create the DATABASE_URL database when it does not exist yet."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    url = urlsplit(os.environ["DATABASE_URL"])
    name = url.path.lstrip("/")
    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _django():
    _environment()
    _database_ensure()
    import django

    django.setup()


# --- the data: deterministic, the same for both paths ---------------------------------------


def batch_events(run: str, client: int, batch: int, workload: str) -> list[dict]:
    """1,000 events: 20 sessions of start, alternating reasoning/tool calls, action, end."""
    base = datetime.now(UTC) - timedelta(minutes=30)
    events = []
    for i in range(BATCH):
        session, step = divmod(i, SESSION_EVENTS)
        item = {
            "event_id": f"{run}-c{client}-b{batch}-{i}",
            "session_id": f"{run}-c{client}-b{batch}-s{session}",
            "workload": workload,
            "occurred_at": (base + timedelta(seconds=i)).isoformat(),
            "attributes": {"model": "o1", "step": step},
        }
        if step == 0:
            item.update(type="session_start", content=f"Summarise ticket {i} and draft a reply.")
        elif step == SESSION_EVENTS - 2:
            item.update(type="final_action", content="Drafted a reply to the customer; not sent.")
        elif step == SESSION_EVENTS - 1:
            item.update(type="session_end")
        elif step % 2:
            item.update(
                type="reasoning_step",
                content=f"Step {step}: the customer asks about a refund, check the order first.",
                input_tokens=800,
                output_tokens=400,
                reasoning_tokens=300,
                duration_ms=1200,
            )
        else:
            item.update(
                type="tool_call",
                tool="ticket-read",
                tool_call_id=f"call-{i}",
                arguments={"ticket": i, "fields": ["body", "status"]},
                duration_ms=40,
            )
        events.append(item)
    return events


def _arguments_hash(arguments) -> str:
    if arguments is None:
        return ""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- the API path ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_start(broker: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "INGEST_RATE": "100000000/min",
        "CELERY_BROKER_URL": broker,
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable, "-m", "gunicorn", "governance.wsgi:application",
        "--workers", "2", "--worker-class", "gthread", "--threads", "4",
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            conn.getresponse().read()
            return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("gunicorn did not start")


def _server_stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


def _api_client(port, token, run, client, batches, barrier, results) -> None:
    bodies = [
        json.dumps({"events": batch_events(run, client, b, API_WORKLOAD)}).encode()
        for b in range(batches)
    ]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    barrier.wait()
    started = time.perf_counter()
    accepted = 0
    for body in bodies:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        accepted += json.loads(payload)["accepted"]
        conn.close()
    results.put((started, time.perf_counter(), accepted))


# --- the baseline: raw COPY -----------------------------------------------------------------


def _copy_client(dsn, workload_id, sessions, run, client, batches, barrier, results) -> None:
    import psycopg

    now = datetime.now(UTC)
    batches_rows = []
    for b in range(batches):
        rows = []
        for e in batch_events(run, client, b, COPY_WORKLOAD):
            rows.append(
                (
                    workload_id, sessions[e["session_id"]], e["event_id"], e["type"],
                    datetime.fromisoformat(e["occurred_at"]), now, e.get("tool", ""),
                    e.get("tool_call_id", ""), _arguments_hash(e.get("arguments")),
                    e.get("content", ""), e.get("input_tokens", 0), e.get("output_tokens", 0),
                    e.get("reasoning_tokens", 0), e.get("duration_ms"),
                    json.dumps(e["attributes"]),
                )
            )  # fmt: skip
        batches_rows.append(rows)
    with psycopg.connect(dsn) as conn:
        barrier.wait()
        started = time.perf_counter()
        for rows in batches_rows:
            with conn.cursor() as cursor:
                copy_sql = f"COPY workloads_usageevent ({COPY_COLUMNS}) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            conn.commit()
        results.put((started, time.perf_counter(), len(batches_rows) * BATCH))


# --- running --------------------------------------------------------------------------------


def _run_clients(target, args_for, clients: int) -> float:
    """Run the clients as processes started together; events/s from first start to last end."""
    from django.db import connections

    connections.close_all()  # forked children must not share the parent's connections
    context = mp.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args_for(c), barrier, results))
        for c in range(clients)
    ]
    for process in processes:
        process.start()
    outcomes = []
    while len(outcomes) < clients:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode for p in processes):
                for p in processes:
                    p.kill()
                raise RuntimeError("a client failed; see its traceback above") from None
    for process in processes:
        process.join()
    events = sum(o[2] for o in outcomes)
    elapsed = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    return events / elapsed


def _prepare(run: str) -> tuple[str, int]:
    """Migrate, create the two bench workloads, clear their old events, issue a token."""
    _django()
    from django.core.management import call_command
    from django.db import connection

    from governance.models import ServiceToken
    from governance.tokens import service_token_create
    from workloads.models import Workload

    call_command("migrate", verbosity=0)
    from tests.factories import UserFactory  # factory-boy is a dev dependency, as is this bench

    owner = UserFactory(username="bench-ingest")
    workload_ids = []
    for slug in (API_WORKLOAD, COPY_WORKLOAD):
        workload, _ = Workload.objects.get_or_create(
            slug=slug,
            defaults={
                "name": slug,
                "purpose": "Benchmark workload",
                "owner": owner,
                "model_family": "o1",
                "environment": "production",
            },
        )
        workload_ids.append(workload.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM workloads_pendingevaluation WHERE event_id IN (SELECT id FROM "
            "workloads_usageevent WHERE workload_id = ANY(%s))",
            [workload_ids],
        )
        cursor.execute(
            "DELETE FROM workloads_usageevent WHERE workload_id = ANY(%s)", [workload_ids]
        )
        cursor.execute("DELETE FROM workloads_session WHERE workload_id = ANY(%s)", [workload_ids])
    ServiceToken.objects.filter(name=f"bench-ingest-{run}").delete()
    token = service_token_create(
        name=f"bench-ingest-{run}",
        scopes=["ingest"],
        workloads=[Workload.objects.get(slug=API_WORKLOAD)],
    )
    return token.secret, workload_ids[1]


def api_ingest_rate(
    *, batches_per_client: int = 10, clients: int = CLIENTS, broker: str = MEMORY_BROKER
) -> float:
    """Events/s through POST /api/v1/events (gunicorn, 2 workers), 1,000-event batches."""
    run = f"r{int(time.time())}"
    token, _ = _prepare(run)
    return _api_rate(token, run, batches_per_client, clients, broker)


def _warm_up(port: int, token: str, run: str) -> None:
    """First requests per worker pay one-off costs (imports, pool, broker connection)."""
    from concurrent.futures import ThreadPoolExecutor

    def post(n: int) -> None:
        event = batch_events(f"{run}-warm{n}", 0, 0, API_WORKLOAD)[:10]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"events": event}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        conn.getresponse().read()
        conn.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(16)))


def _api_rate(token, run, batches_per_client, clients, broker) -> float:
    server, port = _server_start(broker)
    try:
        _warm_up(port, token, run)
        return _run_clients(
            _api_client, lambda c: (port, token, run, c, batches_per_client), clients
        )
    finally:
        _server_stop(server)


def _copy_rate(run, copy_workload_id, batches_per_client, clients) -> float:
    from django.db import connection

    from workloads.models import Session

    keys = {
        e["session_id"]
        for c in range(clients)
        for b in range(batches_per_client)
        for e in batch_events(run, c, b, COPY_WORKLOAD)
        if e["type"] == "session_start"
    }
    Session.objects.bulk_create(
        [Session(workload_id=copy_workload_id, external_id=key) for key in sorted(keys)]
    )
    sessions = dict(
        Session.objects.filter(workload_id=copy_workload_id).values_list("external_id", "pk")
    )
    dsn = os.environ["DATABASE_URL"]
    # The baseline is a raw COPY of the rows into the same table, with its indexes, checks and
    # foreign keys, but without the trigger that puts each stored event on evaluation's
    # pending list: that is Mandate's own work, which the API pays for. Rounds never overlap,
    # so switching it off for the COPY round touches no API round. (Replica mode would skip
    # it per connection, but also the foreign-key checks, which are triggers too.)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE workloads_usageevent DISABLE TRIGGER {PENDING_TRIGGER}")
    try:
        return _run_clients(
            _copy_client,
            lambda c: (dsn, copy_workload_id, sessions, run, c, batches_per_client),
            clients,
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE workloads_usageevent ENABLE TRIGGER {PENDING_TRIGGER}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5, help="batches per client a round (5)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating COPY/API rounds (4): evens out noise"
    )
    parser.add_argument("--broker", default=MEMORY_BROKER, help="broker the server publishes to")
    options = parser.parse_args()
    _environment()
    events = options.batches * options.clients * BATCH
    print(
        f"{options.rounds} rounds x {events} events per path, {options.clients} clients, "
        f"batches of {BATCH}"
    )
    run = f"r{int(time.time())}"
    token, copy_workload_id = _prepare(run)
    server, port = _server_start(options.broker)
    copy_rates, api_rates = [], []
    try:
        _warm_up(port, token, run)
        for number in range(1, options.rounds + 1):
            round_run = f"{run}-{number}"
            copy_rates.append(
                _copy_rate(round_run, copy_workload_id, options.batches, options.clients)
            )
            api_rates.append(
                _run_clients(
                    _api_client,
                    lambda c, r=round_run: (port, token, r, c, options.batches),
                    options.clients,
                )
            )
            print(
                f"round {number}: COPY {copy_rates[-1]:9,.0f} events/s   "
                f"API {api_rates[-1]:9,.0f} events/s   ratio {api_rates[-1] / copy_rates[-1]:.2f}"
            )
    finally:
        _server_stop(server)
    copy, api = statistics.median(copy_rates), statistics.median(api_rates)
    ratios = [a / c for a, c in zip(api_rates, copy_rates, strict=True)]
    print(
        f"raw psycopg COPY (commit per {BATCH}, {options.clients} clients): {copy:9,.0f} events/s"
    )
    print(f"POST /api/v1/events (gunicorn, 2 workers):         {api:9,.0f} events/s")
    print(
        f"ratio API / COPY: {statistics.median(ratios):.2f} (median of rounds; "
        f"range {min(ratios):.2f}-{max(ratios):.2f})  target >= 0.6"
    )


if __name__ == "__main__":
    main()
