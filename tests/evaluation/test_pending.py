"""The pending list: every stored event is on it until evaluation takes it off, whatever
stored the event; the old `evaluated` flag's data moved onto it (and back)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from governance.evaluation.services import events_evaluate
from tests.evaluation.rows import add_events, make_session
from tests.factories import ClassifiedWorkloadFactory
from workloads.models import PendingEvaluation, UsageEvent

BEFORE = [("workloads", "0011_session_traces")]
AFTER = [("workloads", "0012_pending_evaluation")]


def _pending() -> set[int]:
    return set(PendingEvaluation.objects.values_list("event_id", flat=True))


@pytest.mark.django_db
def test_an_event_stored_by_any_path_is_pending():
    session = make_session(ClassifiedWorkloadFactory())
    bulk = add_events(session, ("session_start", 0), ("tool_call", 1, {"tool": "crm-api"}))
    single = UsageEvent.objects.create(
        workload_id=session.workload_id,
        session=session,
        event_id="one-by-one",
        type="session_end",
        occurred_at=timezone.now(),
    )
    assert _pending() == {bulk[0].id, bulk[1].id, single.id}


@pytest.mark.django_db
def test_a_skipped_duplicate_adds_nothing_to_the_list():
    session = make_session(ClassifiedWorkloadFactory())
    (stored,) = add_events(session, ("session_start", 0))
    duplicate = UsageEvent(
        workload_id=session.workload_id,
        session=session,
        event_id=stored.event_id,
        type="session_start",
        occurred_at=stored.occurred_at,
    )
    UsageEvent.objects.bulk_create([duplicate], ignore_conflicts=True)
    assert UsageEvent.objects.count() == 1
    assert _pending() == {stored.id}


@pytest.mark.django_db
def test_evaluation_takes_events_off_the_list_and_deleting_an_event_drops_its_row():
    session = make_session(ClassifiedWorkloadFactory())
    first, second = add_events(session, ("session_start", 0), ("session_end", 1))
    events_evaluate(min_id=first.id, max_id=first.id)
    assert _pending() == {second.id}
    second.delete()
    assert _pending() == set()


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_unevaluated_flags_onto_the_list_and_back():
    # Made with today's models before going back: later migrations add columns to workloads.
    workload_pk = ClassifiedWorkloadFactory().pk
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Workload = apps.get_model("workloads", "Workload")
    Session = apps.get_model("workloads", "Session")
    Event = apps.get_model("workloads", "UsageEvent")
    workload = Workload.objects.get(pk=workload_pk)
    session = Session.objects.create(workload=workload, external_id="old")
    now = timezone.now()
    done, waiting = (
        Event.objects.create(
            workload=workload,
            session=session,
            event_id=name,
            type="session_start",
            occurred_at=now,
            evaluated=evaluated,
        )
        for name, evaluated in (("done", True), ("waiting", False))
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    assert _pending() == {waiting.id}
    # The trigger exists once the migration has run (SQLite's table rebuild drops triggers).
    fresh = UsageEvent.objects.create(
        workload_id=workload.pk, session_id=session.pk, event_id="new", type="x", occurred_at=now
    )
    assert _pending() == {waiting.id, fresh.id}

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    flags = dict(apps.get_model("workloads", "UsageEvent").objects.values_list("pk", "evaluated"))
    assert flags == {done.id: True, waiting.id: False, fresh.id: False}
    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
