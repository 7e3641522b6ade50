from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from governance.audit import audit_record
from governance.models import AuditEvent
from governance.models.audit import AuditImmutable

pytestmark = pytest.mark.django_db
TABLE = AuditEvent._meta.db_table


def _record(n: int) -> list[AuditEvent]:
    events = []
    for i in range(n):
        with transaction.atomic():
            events.append(
                audit_record(
                    by=None, action="test.event", object_type="test", object_id=str(i), after={}
                )
            )
    return events


def _verify(*args) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def tamper(sql: str, params: list) -> None:
    """Rewrite history in SQL, as a role that may alter the table would: on PostgreSQL the
    append-only trigger has to be disabled first (inside the test's transaction)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the pending FK checks first
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_append_only")


def test_it_reports_ok_with_the_count_and_the_head():
    events = _record(5)
    assert _verify().strip() == f"OK: 5 audit events, chain intact; head {events[-1].hash}"


def test_an_empty_trail_is_ok():
    assert "OK: 0" in _verify()


def test_it_exits_non_zero_at_an_edited_row():
    events = _record(5)
    tamper(f"UPDATE {TABLE} SET action = %s WHERE id = %s", ["forged", events[2].pk])
    with pytest.raises(CommandError) as failure:
        _verify()
    assert failure.value.returncode == 1
    assert f"event {events[2].pk}" in str(failure.value)
    assert "content does not match its hash" in str(failure.value)


def test_it_detects_a_deleted_row_at_the_next_event():
    events = _record(5)
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError) as failure:
        _verify()
    assert f"event {events[2].pk}" in str(failure.value)
    assert "prev_hash" in str(failure.value)


def test_a_rehashed_edit_still_breaks_the_next_link():
    """Recomputing the edited row's own hash does not help: the next row points at the old one."""
    events = _record(3)
    tamper(f"UPDATE {TABLE} SET hash = %s WHERE id = %s", ["f" * 64, events[1].pk])
    with pytest.raises(CommandError, match=f"event {events[1].pk}"):
        _verify()


def test_the_orm_refuses_to_update_an_audit_event():
    event = _record(1)[0]
    event.action = "forged"
    with pytest.raises(AuditImmutable):
        event.save()
    with pytest.raises(AuditImmutable):
        event.save(update_fields=["action"])
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


def test_the_orm_refuses_to_delete_an_audit_event():
    event = _record(1)[0]
    with pytest.raises(AuditImmutable):
        event.delete()
    with pytest.raises(AuditImmutable):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_a_recorded_head_catches_events_removed_from_the_end():
    events = _record(5)
    head = events[-1].hash
    assert head in _verify("--expect-head", head)
    tamper(f"DELETE FROM {TABLE} WHERE id >= %s", [events[3].pk])
    assert "chain intact" in _verify()  # the chain alone cannot tell
    with pytest.raises(CommandError, match="expected head is not in the chain"):
        _verify("--expect-head", head)
    assert "chain intact" in _verify("--expect-head", events[2].hash)


@pytest.mark.postgres
def test_postgres_itself_refuses_to_rewrite_an_audit_event():
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    from django.db import DatabaseError

    event = _record(1)[0]
    for sql in (
        f"UPDATE {TABLE} SET action = 'forged' WHERE id = %s",
        f"DELETE FROM {TABLE} WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"
