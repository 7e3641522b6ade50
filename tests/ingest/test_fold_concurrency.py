"""A trace fold and an evaluation claim on the same events, in two real transactions."""

import threading

import pytest
from django.db import connection, transaction

from governance.evaluation import store
from governance.ingest.traces import traces_fold_pending
from tests.ingest.otlp_builders import TRACE, agent_trace
from workloads.models import PendingEvaluation, Session, SessionTrace, UsageEvent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks need PostgreSQL; SQLite locks all"
    ),
]


def _in_thread(target):
    def run():
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_fold_waits_for_a_claim_on_its_events_then_queues_them_all_again(
    export_spans,
    workload,
    monkeypatch,
):
    from governance.ingest import traces

    root, *children = agent_trace()
    export_spans(children)  # before their root: stored in a session of their own
    monkeypatch.setattr(traces, "_fold", lambda *args: 0)  # linked, not folded yet
    export_spans([root])
    monkeypatch.undo()
    orphan_events = list(
        UsageEvent.objects.filter(session__external_id=TRACE).values_list("id", flat=True)
    )
    assert orphan_events and SessionTrace.objects.get(trace_id=TRACE).fold_pending

    claimed, release, folded = threading.Event(), threading.Event(), []

    def claim():  # an evaluation run holding the orphan's events, not committed yet
        with transaction.atomic():
            taken = store.events_claim(
                min_id=min(orphan_events), max_id=max(orphan_events), limit=1000
            )
            assert {event.id for _session, event in taken.events} == set(orphan_events)
            claimed.set()
            release.wait(10)

    claimer = _in_thread(claim)
    assert claimed.wait(10)
    folder = _in_thread(lambda: folded.append(traces_fold_pending()))
    folder.join(0.5)
    assert folder.is_alive(), "the fold must wait for the claim's locks"
    release.set()
    claimer.join(10)
    folder.join(10)

    assert folded == [1]
    assert not Session.objects.filter(external_id=TRACE).exists()
    target = SessionTrace.objects.get(trace_id=TRACE).session_id
    merged_events = set(UsageEvent.objects.filter(session_id=target).values_list("id", flat=True))
    assert set(orphan_events) < merged_events
    # The claim's evaluation judged the events in the wrong session: all go back on the list.
    assert set(PendingEvaluation.objects.values_list("event_id", flat=True)) == merged_events
