import pytest
from django.db import transaction

from governance.audit import audit_record, audit_verify
from governance.models import AuditEvent
from tests.governance.test_verify_audit import tamper

pytestmark = pytest.mark.django_db


def _record(n: int, by=None):
    for i in range(n):
        with transaction.atomic():
            audit_record(
                by=by,
                action="test.event",
                object_type="test",
                object_id=str(i),
                object_repr=f"object {i}",
                after={"i": i},
            )


def test_it_chains_each_event_to_the_previous_one():
    _record(3)
    events = list(AuditEvent.objects.order_by("id"))
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert audit_verify() is None


def test_verify_reports_the_first_edited_row():
    _record(4)
    third = AuditEvent.objects.order_by("id")[2]
    # The ORM and PostgreSQL's trigger refuse; tampering happens in SQL, trigger disabled.
    tamper(
        f"UPDATE {AuditEvent._meta.db_table} SET after = %s WHERE id = %s", ['{"i": 999}', third.pk]
    )
    broken = audit_verify()
    assert broken is not None
    assert broken.event_id == third.pk


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_record_outside_a_transaction():
    with pytest.raises(RuntimeError):
        audit_record(by=None, action="x", object_type="t", object_id="1")
