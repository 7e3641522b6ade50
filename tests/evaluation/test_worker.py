"""Real Celery workers against Redis and the PostgreSQL test database: events in, findings
out; a worker killed mid-batch; a broker outage drained by the sweeper."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from governance.evaluation.services import evaluation_enqueue, unevaluated_sweep
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.evaluation.worker import (
    BROKER_URL,
    broker,
    celery_worker,
    database_url_for_worker,
    flush_broker,
    redis_reachable,
    wait_for,
)
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, tier
from workloads.models import PendingEvaluation, Tool

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not redis_reachable(), reason="no Redis reachable for the broker"),
]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the worker needs a database it can share (PostgreSQL)")
    flush_broker()


def _all_evaluated():
    return not PendingEvaluation.objects.exists()


def _scenario():
    """A session with an unentitled call, a loop and the trifecta: 3 findings expected."""
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    for slug in ("sql-query", "web-search", "crm-api"):
        EntitlementFactory(
            workload=workload,
            tool=Tool.objects.get(slug=slug),
            valid_from=timezone.now() - timedelta(days=1),
        )
    session = make_session(workload)
    events = add_events(
        session,
        ("session_start", 0, {"content": "Summarise ticket 4411"}),
        ("tool_call", 1, {"tool": "sql-query"}),
        ("tool_call", 2, {"tool": "web-search"}),
        ("tool_call", 3, {"tool": "send-email"}),
        *[("tool_call", 4 + i, {"tool": "crm-api", "arguments": "{}"}) for i in range(3)],
    )
    return session, events


def _send(**kwargs):
    with broker(BROKER_URL) as app:
        app.send_task("mandate.evaluate_events", kwargs=kwargs)


def test_a_real_worker_turns_events_into_findings():
    _session, events = _scenario()
    with celery_worker():
        _send(**id_range(events))
        wait_for(_all_evaluated, what="events to be evaluated")
    assert sorted(Finding.objects.values_list("kind", flat=True)) == [
        "forbidden_combination",
        "reasoning_loop",
        "unentitled_tool",
    ]


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing():
    session, events = _scenario()
    # Hold the session's lock so the worker blocks mid-batch, after claiming the events.
    holder = psycopg.connect(database_url_for_worker())
    # Activity statistics are a per-transaction snapshot: watch from a separate connection.
    watcher = psycopg.connect(database_url_for_worker(), autocommit=True)
    try:
        holder.execute("SELECT id FROM workloads_session WHERE id = %s FOR UPDATE", [session.id])
        with celery_worker() as worker:
            _send(**id_range(events))

            def worker_waits_on_the_session():
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).fetchone()
                return row[0] > 0

            wait_for(worker_waits_on_the_session, what="the worker to block mid-batch")
            killed = worker.kill_child()
            wait_for(
                lambda: worker.children() and worker.children() != [killed],
                what="a replacement child process",
            )
            holder.rollback()  # the dead run's transaction aborts; the redelivery runs
            wait_for(_all_evaluated, what="the redelivered task to evaluate everything")
            assert "WorkerLostError" in worker.output()
    finally:
        holder.rollback()
        holder.close()
        watcher.close()
    kinds = list(Finding.objects.values_list("kind", flat=True))
    assert sorted(kinds) == ["forbidden_combination", "reasoning_loop", "unentitled_tool"]


def test_events_stored_while_the_broker_was_down_are_drained_by_the_sweeper():
    _session, events = _scenario()
    with broker("redis://127.0.0.1:1/0"):
        assert evaluation_enqueue(**id_range(events)) is False
    assert PendingEvaluation.objects.count() == len(events)
    with celery_worker(), broker(BROKER_URL):
        assert unevaluated_sweep(grace_seconds=0, batch=3) == 3  # 7 events, ≤ 3 per task
        wait_for(_all_evaluated, what="the sweeper's tasks to drain the backlog")
    assert Finding.objects.count() == 3
