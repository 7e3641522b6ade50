"""The decision log writer: per wake-up batches, never lost on a failed write."""

import pytest

from governance.decisions import log as log_module
from governance.decisions.log import DecisionLog, decision_row


def row(n: int) -> tuple:
    return decision_row(
        decided_at=1_800_000_000.0 + n,
        workload="w",
        tool="t",
        session=None,
        decision="allow",
        reasons_json="[]",
        reason_code="allowed",
        policy_version=1,
        latency_us=10,
        token_id=None,
    )


@pytest.fixture
def writes(monkeypatch):
    batches = []
    monkeypatch.setattr(log_module, "_write", lambda rows: batches.append(len(rows)))
    return batches


def test_a_flush_writes_what_is_buffered_in_full_batches(writes):
    log = DecisionLog(background=False, batch=2)
    for n in range(5):
        log.record(row(n))
    assert log.flush() == 5
    assert writes == [2, 2, 1]
    assert log.pending() == 0


def test_a_wake_up_writes_only_what_was_there_when_it_woke(writes):
    log = DecisionLog(background=False, batch=100)
    for n in range(3):
        log.record(row(n))
    assert log.flush(limit=3) == 3
    log.record(row(9))
    assert writes == [3]
    assert log.pending() == 1


def test_a_failed_write_keeps_the_entries_in_order(monkeypatch):
    log = DecisionLog(background=False)
    for n in range(3):
        log.record(row(n))

    def down(rows):
        raise ConnectionError("database down")

    monkeypatch.setattr(log_module, "_write", down)
    with pytest.raises(ConnectionError):
        log.flush()
    assert [r[0] for r in log._buffer] == [row(n)[0] for n in range(3)]


def test_the_buffer_is_bounded(writes):
    log = DecisionLog(background=False, max_buffer=2)
    for n in range(4):
        log.record(row(n))
    assert log.pending() == 2 and log.dropped == 2


def test_a_disabled_log_records_nothing(writes):
    log = DecisionLog(enabled=False)
    log.record(row(1))
    assert log.pending() == 0


@pytest.mark.django_db(transaction=True)
def test_the_background_writer_stores_decisions():
    import time

    from governance.models import Decision

    log = DecisionLog(background=True, interval=0.05)
    log.record(row(1))
    deadline = time.monotonic() + 10
    while not Decision.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.stop()
    stored = Decision.objects.get()
    assert (stored.workload, stored.decision, stored.latency_us) == ("w", "allow", 10)
