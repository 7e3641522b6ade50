"""The decision log writer: per wake-up batches, never lost on a failed write."""

import pytest

from governance.decisions import log as log_module
from governance.decisions.log import DecisionLog, copy_line, decision_row


def row(n: int, **changes) -> tuple:
    fields = {
        "decided_at": 1_800_000_000.0 + n,
        "workload": "w",
        "tool": "t",
        "session": None,
        "decision": "allow",
        "reasons_json": "[]",
        "reason_code": "allowed",
        "policy_version": 1,
        "latency_us": 10,
        "token_id": None,
    }
    return decision_row(**(fields | changes))


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
    # Wait on the writer's own count, not on the table: a query racing the writer's
    # transaction finds the table locked on SQLite's shared in-memory test database.
    while not log.written and time.monotonic() < deadline:
        time.sleep(0.05)
    written_by_the_thread = log.written
    log.stop()
    assert written_by_the_thread == 1
    stored = Decision.objects.get()
    assert (stored.workload, stored.decision, stored.latency_us) == ("w", "allow", 10)


def test_a_copy_line_escapes_what_copy_would_misread():
    line = copy_line(
        row(0.25, workload="a\tb", session="x\ny\\z\x00", context_json='{"p":"c:\\\\d"}')
    )
    fields = line.removesuffix("\n").split("\t")
    assert len(fields) == 13
    assert fields[0] == "2027-01-15 08:00:00.250000+00"
    assert fields[1] == "a\\tb"
    assert fields[3] == "x\\ny\\\\z\ufffd"
    assert fields[9] == "\\N"  # no token
    assert fields[12] == '{"p":"c:\\\\\\\\d"}'


NASTY = {
    "workload": "wl\tone",
    "session": "line\nbreak \\ back\\slash",
    "correlation_id": "c\rr",
    "reasons_json": '[{"code":"allowed","message":"say \\"hi\\" \\\\ \\u0000"}]',
    "context_json": '{"path":"C:\\\\tmp\\ttab","n":[1,2]}',
}


@pytest.mark.django_db
def test_written_entries_read_back_exactly():
    from governance.models import Decision

    log = DecisionLog(background=False)
    log.record(row(0.5, **NASTY))
    assert log.flush() == 1
    stored = Decision.objects.get()
    assert stored.workload == "wl\tone"
    assert stored.session == "line\nbreak \\ back\\slash"
    assert stored.correlation_id == "c\rr"
    assert stored.context == {"path": "C:\\tmp\ttab", "n": [1, 2]}
    assert stored.reasons[0]["message"].startswith('say "hi" \\ ')
    assert stored.decided_at.timestamp() == 1_800_000_000.5


@pytest.mark.django_db
def test_an_entry_the_database_refuses_does_not_block_the_others():
    from governance.models import Decision

    log = DecisionLog(background=False)
    for n in range(3):
        log.record(row(n, policy_version=-1 if n == 1 else 1))
    assert log.flush() == 2
    assert log.rejected == 1 and log.pending() == 0
    assert sorted(Decision.objects.values_list("policy_version", flat=True)) == [1, 1]


@pytest.mark.django_db
def test_the_writer_marks_the_asking_tokens_used():
    from governance.models import ServiceToken
    from governance.tokens import service_token_create

    issued = service_token_create(name="asker", scopes=["decide"], all_workloads=True)
    log = DecisionLog(background=False)
    log.record(row(0, token_id=issued.token.pk))
    log.flush()
    first = ServiceToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    ServiceToken.objects.filter(pk=issued.token.pk).update(last_used_at=None)
    log.record(row(1, token_id=issued.token.pk))
    log.flush()  # within the minute: no second update
    assert ServiceToken.objects.get(pk=issued.token.pk).last_used_at is None


@pytest.mark.django_db
def test_the_writer_keeps_hourly_counts_per_answer_and_reason():
    from governance.models import DecisionCount

    log = DecisionLog(background=False)
    hour = 1_800_000_000 // 3600 * 3600
    for offset, decision, code in [
        (1, "allow", "allowed"),
        (2, "allow", "allowed"),
        (3, "deny", "tool_not_granted"),
        (3600 + 5, "allow", "allowed"),
    ]:
        log.record(row(0, decided_at=hour + offset, decision=decision, reason_code=code))
    log.flush()
    log.record(row(0, decided_at=hour + 9, decision="allow", reason_code="allowed"))
    log.flush()  # a second batch adds to the same bucket
    counts = {
        (c.hour.timestamp() - hour, c.decision, c.reason_code): c.n
        for c in DecisionCount.objects.all()
    }
    assert counts == {
        (0, "allow", "allowed"): 3,
        (0, "deny", "tool_not_granted"): 1,
        (3600, "allow", "allowed"): 1,
    }


def _database_down(monkeypatch, name: str):
    """Make the log module's `name` fail as it would with the database down; returns the
    real one."""
    real = getattr(log_module, name)

    def down(*args):
        raise ConnectionError("database down")

    monkeypatch.setattr(log_module, name, down)
    return real


def _overflow_while_down(monkeypatch, failing: str, *, max_buffer: int, rows: int):
    """A log that records `rows` entries into a buffer of `max_buffer` and then fails to
    flush because `failing` cannot reach the database; returns it and the real `failing`."""
    log = DecisionLog(background=False, max_buffer=max_buffer)
    real = _database_down(monkeypatch, failing)
    for n in range(rows):
        log.record(row(n))
    with pytest.raises(ConnectionError):
        log.flush()
    return log, real


def _loss_reports():
    from governance.models import AuditEvent

    return list(
        AuditEvent.objects.filter(action=log_module.LOSSES_ACTION).values_list("after", flat=True)
    )


@pytest.mark.django_db
def test_entries_dropped_while_the_database_was_down_are_reported_when_it_answers(monkeypatch):
    log, real_write = _overflow_while_down(monkeypatch, "_write", max_buffer=2, rows=5)
    assert _loss_reports() == []  # nothing to report to while the database is down

    monkeypatch.setattr(log_module, "_write", real_write)
    assert log.flush() == 2

    (report,) = _loss_reports()
    assert report["lost"] == 3 and report["dropped"] == 3 and report["rejected"] == 0
    assert report["first_lost_at"] <= report["last_lost_at"]
    log.record(row(9))
    log.flush()
    assert len(_loss_reports()) == 1  # reported once, not on every flush


@pytest.mark.django_db
def test_a_report_that_fails_is_kept_and_made_on_the_next_flush(monkeypatch, writes):
    log, real_record = _overflow_while_down(monkeypatch, "_losses_record", max_buffer=1, rows=3)
    log.record(row(3))  # and one more dropped meanwhile
    log.record(row(4))

    monkeypatch.setattr(log_module, "_losses_record", real_record)
    log.flush()

    (report,) = _loss_reports()
    assert report["dropped"] == 3


@pytest.mark.django_db
def test_entries_the_database_refuses_are_reported_as_lost():
    log = DecisionLog(background=False)
    log.record(row(1, policy_version=-1))
    log.record(row(2))

    assert log.flush() == 1

    (report,) = _loss_reports()
    assert report["rejected"] == 1 and report["dropped"] == 0 and report["lost"] == 1


def test_the_runtime_builds_its_log_from_the_settings(settings):
    from governance.decisions.runtime import runtime, runtime_reset

    settings.DECISIONS_LOG_BATCH = 123
    settings.DECISIONS_LOG_MAX_BUFFER = 4567
    settings.DECISIONS_LOG_FLUSH_MS = 250
    runtime_reset()

    log = runtime().log

    assert (log.batch, log.max_buffer, log.interval) == (123, 4567, 0.25)
