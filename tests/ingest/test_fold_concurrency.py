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


def test_a_fold_that_merges_findings_and_a_containment_take_one_lock_order(
    export_spans, workload, reviewer, monkeypatch
):
    """A fold merging the spans' gating finding into the named session's takes the workload
    before the merge writes its audit event, the order containment takes (workload, then the
    audit chain); the other way round the two waited for each other."""
    import time

    from django.utils import timezone

    from governance.findings import services as findings
    from governance.ingest import traces
    from governance.models import ContainmentAction, Finding

    root, *children = agent_trace()
    export_spans(children)
    monkeypatch.setattr(traces, "_fold", lambda *args: 0)
    export_spans([root])
    monkeypatch.undo()
    orphan = Session.objects.get(external_id=TRACE)
    target = Session.objects.exclude(pk=orphan.pk).get()

    def finding(session, key):
        return Finding.objects.create(
            kind="intent_drift",
            severity="medium",
            workload=workload,
            session=session,
            summary="Drifted.",
            dedupe_key=key,
            occurred_at=timezone.now(),
        )

    on_spans = finding(orphan, f"s{orphan.pk}:intent_drift")
    finding(target, f"s{target.pk}:intent_drift")  # the same signal: the fold merges them
    findings.containment_apply(finding=on_spans, action="gate_sessions", by=reviewer, reason="x")
    other = finding(target, "other")
    merging, errors = threading.Event(), []
    merge = findings.finding_merge

    def pausing_merge(**kwargs):
        survivor = merge(**kwargs)
        merging.set()
        time.sleep(0.5)  # the containment starts while the fold holds its locks
        return survivor

    monkeypatch.setattr(traces, "finding_merge", pausing_merge)

    def fold():
        try:
            traces_fold_pending()
        except Exception as exc:
            errors.append(exc)

    def contain():
        try:
            merging.wait(10)
            findings.containment_apply(
                finding=other, action="gate_sessions", by=reviewer, reason="Again"
            )
        except Exception as exc:
            errors.append(exc)

    threads = [_in_thread(fold), _in_thread(contain)]
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert ContainmentAction.objects.filter(reversed_at=None).count() == 2
