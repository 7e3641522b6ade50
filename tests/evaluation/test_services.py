"""Evaluation services against the database: idempotent, incremental, nothing lost."""

import pytest

from governance.evaluation import services
from governance.evaluation.services import events_evaluate, open_sessions_check
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from workloads.models import PendingEvaluation

pytestmark = pytest.mark.django_db


def test_it_raises_a_finding_for_an_unentitled_call_and_marks_events_evaluated(workload):
    session = make_session(workload)
    events = add_events(session, ("session_start", 0), ("tool_call", 1, {"tool": "send-email"}))
    result = events_evaluate(**id_range(events))
    assert result.events == 2
    finding = Finding.objects.get()
    assert finding.kind == "unentitled_tool"
    assert finding.tool == "send-email"
    assert finding.evidence == [events[1].id]
    assert finding.session == session
    assert not PendingEvaluation.objects.exists()


def test_raised_findings_are_audited_once_per_batch_after_commit(
    workload, django_capture_on_commit_callbacks
):
    from governance.models import AuditEvent

    session = make_session(workload)
    events = add_events(
        session, ("tool_call", 1, {"tool": "send-email"}), ("tool_call", 2, {"tool": "code-exec"})
    )
    with django_capture_on_commit_callbacks(execute=True):
        events_evaluate(**id_range(events))
    audit = AuditEvent.objects.get(action="findings.raise")
    assert audit.actor_label == "system"
    assert sorted(f["tool"] for f in audit.after["findings"]) == ["code-exec", "send-email"]
    assert {f["key"] for f in audit.after["findings"]} == set(
        Finding.objects.values_list("dedupe_key", flat=True)
    )
    with django_capture_on_commit_callbacks(execute=True):
        events_evaluate(**id_range(events))  # nothing new: no second event
    assert AuditEvent.objects.filter(action="findings.raise").count() == 1


def test_running_twice_raises_nothing_twice_and_loses_nothing(workload):
    session = make_session(workload)
    events = add_events(
        session, ("tool_call", 1, {"tool": "send-email"}), ("tool_call", 2, {"tool": "code-exec"})
    )
    events_evaluate(**id_range(events))
    again = events_evaluate(**id_range(events))
    assert again.events == 0
    assert Finding.objects.count() == 2


def test_a_replayed_run_with_a_fresh_state_inserts_no_duplicate(workload):
    session = make_session(workload)
    events = add_events(session, ("tool_call", 1, {"tool": "send-email"}))
    events_evaluate(**id_range(events))
    # As if the state write were lost but the finding kept: the unique key still holds.
    PendingEvaluation.objects.bulk_create(PendingEvaluation(event=e) for e in events)
    session.evaluation_state = {}
    session.save()
    events_evaluate(**id_range(events))
    assert Finding.objects.count() == 1


def test_a_range_holding_other_batches_claims_only_the_unevaluated(workload):
    session = make_session(workload)
    first = add_events(session, ("tool_call", 1, {"tool": "crm-api"}))
    events_evaluate(**id_range(first))
    second = add_events(session, ("tool_call", 2, {"tool": "crm-api"}))
    result = events_evaluate(min_id=first[0].id, max_id=second[-1].id)
    assert result.events == 1


def test_a_failed_run_rolls_back_leaving_the_events_for_the_next(workload, monkeypatch):
    session = make_session(workload)
    events = add_events(session, ("tool_call", 1, {"tool": "send-email"}))

    def crash(drafts, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(services, "findings_record", crash)
    with pytest.raises(RuntimeError):
        events_evaluate(**id_range(events))
    assert PendingEvaluation.objects.count() == 1
    monkeypatch.undo()
    events_evaluate(**id_range(events))
    assert Finding.objects.count() == 1


def test_state_carries_a_combination_across_separate_runs(workload):
    session = make_session(workload)
    for tool in ("sql-query", "web-search"):
        events_evaluate(**id_range(add_events(session, ("tool_call", 1, {"tool": tool}))))
    events_evaluate(**id_range(add_events(session, ("tool_call", 3, {"tool": "send-email"}))))
    assert Finding.objects.filter(kind="forbidden_combination").count() == 1


def test_batches_are_bounded_and_all_events_are_evaluated(workload):
    session = make_session(workload)
    events = add_events(
        session, *[("reasoning_step", i, {"content": f"step {i}"}) for i in range(7)]
    )
    result = events_evaluate(**id_range(events), batch=3)
    assert result.events == 7


def test_the_sweeper_enqueues_ranges_of_left_over_events(workload, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "evaluation_enqueue", lambda **kw: sent.append(kw) or True)
    session = make_session(workload)
    events = add_events(session, *[("reasoning_step", i) for i in range(5)])
    assert services.unevaluated_sweep(grace_seconds=0, batch=2) == 3
    assert sent[0] == {"min_id": events[0].id, "max_id": events[1].id}
    assert sent[-1] == {"min_id": events[4].id, "max_id": events[4].id}


def test_pending_rows_whose_event_was_deleted_outside_the_orm_are_swept_hourly(workload):
    from django.db import connection

    from governance.evaluation.tasks import sweep_pending_orphans
    from governance.schedule import BEAT_SCHEDULE
    from workloads.models import PendingEvaluation, UsageEvent

    events = add_events(make_session(workload), *[("reasoning_step", i) for i in range(3)])
    with connection.cursor() as cursor:  # no database foreign key: the pending row stays
        cursor.execute(f"DELETE FROM {UsageEvent._meta.db_table} WHERE id = %s", [events[2].id])
    assert PendingEvaluation.objects.filter(event_id=events[2].id).exists()
    assert services.unevaluated_ranges(grace_seconds=0, limit=100, batch=10) == [
        (events[0].id, events[1].id)  # no range ever reaches it
    ]
    assert sweep_pending_orphans.apply().get() == 1
    assert set(PendingEvaluation.objects.values_list("event_id", flat=True)) == {
        events[0].id,
        events[1].id,
    }
    entry = next(e for e in BEAT_SCHEDULE.values() if e["task"] == sweep_pending_orphans.name)
    assert entry["schedule"] == 3600


def test_the_sweeper_leaves_recent_events_to_their_own_task(workload, monkeypatch):
    monkeypatch.setattr(services, "evaluation_enqueue", lambda **kw: True)
    add_events(make_session(workload), ("reasoning_step", 1))
    assert services.unevaluated_sweep(grace_seconds=3600) == 0


def test_enqueueing_with_the_broker_down_reports_false_instead_of_failing(settings, monkeypatch):
    from governance.ingest import handoff

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(handoff.celery_app, "send_task", refuse)
    assert services.evaluation_enqueue(min_id=1, max_id=2) is False


def test_a_silent_session_is_found_overrun_by_the_beat_job(workload):
    from datetime import timedelta

    from django.utils import timezone

    limit = workload.tier.max_session_seconds
    session = make_session(workload, started_at=timezone.now() - timedelta(seconds=limit + 60))
    events_evaluate(**id_range(add_events(session, ("session_start", 0))))
    assert open_sessions_check() == 2  # overrun and idle
    assert set(Finding.objects.values_list("kind", flat=True)) == {
        "session_overrun",
        "idle_timeout",
    }
    assert open_sessions_check() == 0


def test_an_ended_session_is_not_checked_by_the_clock(workload):
    from datetime import timedelta

    from django.utils import timezone

    session = make_session(workload, started_at=timezone.now() - timedelta(days=1))
    session.ended_at = session.started_at
    session.save()
    assert open_sessions_check() == 0


def test_a_call_reported_long_after_a_revocation_but_dated_before_it_is_flagged(admin_user):
    """The claim reads when each event arrived: a runtime cannot date a call back into a
    grant's life once the grant is revoked."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
    from workloads.models import Tool
    from workloads.services import entitlement_revoke

    workload = ClassifiedWorkloadFactory()
    grant = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    entitlement_revoke(grant=grant, by=admin_user, reason="Key leaked")
    grant.__class__.objects.filter(pk=grant.pk).update(
        revoked_at=timezone.now() - timedelta(hours=1)
    )
    # Both say they ran two hours ago, before the revocation an hour ago; one arrived then,
    # one now.
    session = make_session(workload, started_at=timezone.now() - timedelta(hours=2))
    on_time, backdated = add_events(
        session,
        ("tool_call", 1, {"tool": "crm-api"}),
        ("tool_call", 2, {"tool": "crm-api"}),
    )
    on_time.__class__.objects.filter(pk=on_time.pk).update(
        received_at=on_time.occurred_at + timedelta(seconds=3)
    )
    events_evaluate(**id_range([on_time, backdated]))
    (flagged,) = Finding.objects.filter(session=session, kind="expired_grant_use")
    assert flagged.evidence == [backdated.id]
    assert flagged.details["reported_late_seconds"] > 7000


def test_re_evaluating_after_a_suspension_does_not_flag_what_ran_before_it(admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import ClassifiedWorkloadFactory
    from workloads.services import workload_set_status

    workload = ClassifiedWorkloadFactory()
    session = make_session(workload, started_at=timezone.now() - timedelta(minutes=5))
    before = add_events(session, ("session_start", 0), ("reasoning_step", 1))
    workload_set_status(workload=workload, status="suspended", by=admin_user, reason="Leak")
    events_evaluate(**id_range(before))
    assert not Finding.objects.filter(kind="suspended_workload_use").exists()
    after = add_events(session, ("reasoning_step", 400))  # 6 min 40 s in: after it
    events_evaluate(**id_range(after))
    assert Finding.objects.filter(kind="suspended_workload_use", session=session).exists()
