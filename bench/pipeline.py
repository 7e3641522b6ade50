"""Does evaluation keep up with ingestion? Both measured in one run, on PostgreSQL and Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_pipeline \
    BENCH_BROKER_URL=redis://127.0.0.1:6379/14 uv run python bench/pipeline.py

Each round:
  (a) ingest: 4 client processes POST 1,000-event batches to /api/v1/events on the production
      server (gunicorn, 2 workers; bench/ingest.py's machinery). The server publishes one
      evaluation task per stored batch to the Redis broker, as in production.
  (b) evaluate: the same events by real Celery worker processes, the production command
      `celery -A governance worker --concurrency 2`, started once and warmed up before the
      rounds. While (a) runs the workers' consumer is cancelled (they sit idle, so the two
      rates are measured apart, not competing for the machine's cores); then the queue is
      handed back to them and the clock runs from the first event taken off the pending list
      (the consumer's restart is the bench's doing) until the last.
Prints events/s for both, the ratio (target >= 0.5) and the evaluation tasks sent per event
(target: at most one task per 500 events).

The workload is classified and active, with a grant for the tool its sessions call, so the
detectors run their whole path; the run's findings are counted. The database is migrated and
the bench workloads' old events are deleted first (bench/ingest.py's `_prepare`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import ingest  # noqa: E402  (needs ROOT on the path)

QUEUE = "celery"  # Celery's default queue: where the server's evaluation tasks go
TASK_EVENTS = 500  # target: at most one evaluation task per this many events
POLL = 0.02


def catalogue_prepare() -> int:
    """Make the API bench workload a real one: classified, active, its tool granted."""
    from datetime import timedelta

    from django.utils import timezone

    from workloads.models import Entitlement, SensitivityTier, SessionPolicy, Tool, Workload

    workload = Workload.objects.get(slug=ingest.API_WORKLOAD)
    workload.tier = SensitivityTier.objects.get(slug="internal-read")
    workload.status = Workload.Status.ACTIVE
    workload.purpose = "Summarise support tickets and draft replies for agents."
    workload.save()
    SessionPolicy.objects.get_or_create(workload=workload)
    tool, _ = Tool.objects.get_or_create(
        slug="ticket-read",
        defaults={"name": "Ticket read", "capability_class": "downstream_api"},
    )
    Entitlement.objects.get_or_create(
        workload=workload,
        tool=tool,
        status="active",
        defaults={"valid_from": timezone.now() - timedelta(days=30)},
    )
    return workload.pk


def worker_start(broker: str, workers: int) -> tuple[subprocess.Popen, Path]:
    log = Path(tempfile.mkstemp(prefix="mandate-pipeline-worker-", suffix=".log")[1])
    env = {**os.environ, "CELERY_BROKER_URL": broker, "LOG_LEVEL": "WARNING"}
    command = [
        sys.executable, "-m", "celery", "-A", "governance", "worker",
        "--concurrency", str(workers), "--loglevel", "warning",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def worker_stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_CONTROL = """
import sys, time
from celery import Celery
method = getattr(Celery(broker=sys.argv[1]).control, sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    sent = time.time()
    if method(sys.argv[3], reply=True, timeout=1.0):
        print(sent)
        sys.exit(0)
sys.exit(1)
"""


def control(broker: str, action: str, log: Path) -> float:
    """Cancel or add the workers' consumer of the evaluation queue; wait for their reply.
    Returns the wall-clock time the answered request was sent.

    From a short-lived process: a Celery client in this one leaves broker connections that
    hang the API client processes it forks next.
    """
    command = [sys.executable, "-c", _CONTROL, broker, action, QUEUE]
    done = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker did not answer {action}:\n{log.read_text()[-3000:]}")
    return float(done.stdout.strip())


def queue_length(broker: str) -> int:
    """Messages waiting in the evaluation queue (a fresh connection, closed before forks)."""
    import redis

    with redis.Redis.from_url(broker) as client:
        return client.llen(QUEUE)


def unevaluated(workload_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM workloads_pendingevaluation p JOIN workloads_usageevent e"
            " ON e.id = p.event_id WHERE e.workload_id = %s",
            [workload_id],
        )
        return cursor.fetchone()[0]


def watch_first_claim(workload_id: int, waiting: int, seen: dict, timeout: float = 60) -> None:
    """Record in seen["at"] the wall-clock time fewer than `waiting` events were pending."""
    from django.db import connection

    deadline = time.time() + timeout
    try:
        while unevaluated(workload_id) >= waiting:
            if time.time() > deadline:
                return
            time.sleep(POLL / 4)
        seen["at"] = time.time()
    finally:
        connection.close()  # this thread's own connection


def drained(workload_id: int, timeout: float) -> float:
    """Seconds until no event of the workload is left unevaluated."""
    from django.db import connection

    started = time.perf_counter()
    deadline = started + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM workloads_pendingevaluation p JOIN "
                "workloads_usageevent e ON e.id = p.event_id WHERE e.workload_id = %s)",
                [workload_id],
            )
            if not cursor.fetchone()[0]:
                return time.perf_counter() - started
            if time.perf_counter() > deadline:
                raise SystemExit("evaluation did not finish in time")
            time.sleep(POLL)


def findings_of(workload_id: int) -> int:
    from governance.models import Finding

    return Finding.objects.filter(workload_id=workload_id).count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches per client a round")
    parser.add_argument("--clients", type=int, default=ingest.CLIENTS)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (2)")
    parser.add_argument("--rounds", type=int, default=3, help="ingest+evaluate rounds (3)")
    parser.add_argument(
        "--broker", default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
    )
    options = parser.parse_args()
    if not options.broker.startswith("redis://"):
        raise SystemExit("--broker must be a Redis URL")
    ingest._environment()
    import redis

    with redis.Redis.from_url(options.broker) as client:
        client.delete(QUEUE)
    run = f"p{int(time.time())}"
    # This process forks the API clients: give it no connection pool (its threads can hold a
    # lock across the fork and hang a client). The server and workers keep the deployment's.
    deployment_pool = os.environ.get("DATABASE_POOL")
    os.environ["DATABASE_POOL"] = "0"
    token, _ = ingest._prepare(run)
    if deployment_pool is None:
        del os.environ["DATABASE_POOL"]
    else:
        os.environ["DATABASE_POOL"] = deployment_pool
    workload_id = catalogue_prepare()
    from django.db import connection

    events = options.batches * options.clients * ingest.BATCH
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; {options.rounds} rounds x {events:,} events; "
        f"{options.clients} API clients, batches of {ingest.BATCH}; "
        f"{options.workers} Celery worker processes"
    )
    worker, log = worker_start(options.broker, options.workers)
    ingest_rates, evaluate_rates, task_counts = [], [], []
    try:
        # Warm-up: the workers' processes connect, compile the policy, load their code.
        ingest._api_rate(token, f"{run}-warm", 1, options.clients, options.broker)
        connection.close()
        drained(workload_id, timeout=120)
        for number in range(1, options.rounds + 1):
            control(options.broker, "cancel_consumer", log)
            before = findings_of(workload_id)
            connection.close()  # the client processes fork from here
            rate = ingest._api_rate(
                token, f"{run}-{number}", options.batches, options.clients, options.broker
            )
            tasks = queue_length(options.broker)
            waiting = unevaluated(workload_id)
            # The clock starts when the first event comes off the pending list: the consumer's
            # restart after `add_consumer` (up to a second with the Redis transport) is how
            # this bench keeps the two rates apart, not part of evaluation's throughput. A
            # thread watches for it while the control request waits for the workers' replies.
            seen: dict = {}
            watcher = threading.Thread(
                target=watch_first_claim, args=(workload_id, waiting, seen), daemon=True
            )
            watcher.start()
            control(options.broker, "add_consumer", log)
            watcher.join(timeout=60)
            if "at" not in seen:
                raise SystemExit("evaluation did not start in time")
            started = seen["at"]
            drained(workload_id, timeout=600)
            elapsed = time.time() - started
            ingest_rates.append(rate)
            evaluate_rates.append(waiting / elapsed)
            task_counts.append((tasks, waiting))
            found = findings_of(workload_id) - before
            print(
                f"round {number}: ingest {rate:9,.0f} events/s   "
                f"evaluate {evaluate_rates[-1]:9,.0f} events/s   "
                f"ratio {evaluate_rates[-1] / rate:.2f}   "
                f"({waiting:,} events, {tasks} tasks, {found} findings)"
            )
    finally:
        worker_stop(worker)
        if "Traceback" in log.read_text(errors="replace"):
            print(f"worker log:\n{log.read_text(errors='replace')[-3000:]}")
        log.unlink(missing_ok=True)
    api, evaluation = statistics.median(ingest_rates), statistics.median(evaluate_rates)
    ratios = [e / i for e, i in zip(evaluate_rates, ingest_rates, strict=True)]
    tasks = sum(t for t, _ in task_counts)
    evaluated = sum(n for _, n in task_counts)
    print(f"POST /api/v1/events (gunicorn, 2 workers):      {api:9,.0f} events/s")
    print(
        f"evaluated by {options.workers} Celery worker processes:      {evaluation:9,.0f} events/s"
    )
    print(
        f"ratio evaluation / ingest: {statistics.median(ratios):.2f} (median of rounds; "
        f"range {min(ratios):.2f}-{max(ratios):.2f})  target >= 0.5"
    )
    print(
        f"evaluation tasks: {tasks} for {evaluated:,} events = one per "
        f"{evaluated / max(tasks, 1):,.0f} events; tasks / (events/{TASK_EVENTS}) = "
        f"{tasks / (evaluated / TASK_EVENTS):.2f}  target <= 1"
    )


if __name__ == "__main__":
    main()
