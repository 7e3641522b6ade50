"""Re-evaluation steps: they replay evaluated events only, in a constant number of queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.evaluation.reevaluation import reevaluation_step
from governance.evaluation.services import events_evaluate
from governance.models import Finding, ReevaluationJob
from tests.evaluation.rows import add_events, id_range, make_session

pytestmark = pytest.mark.django_db


def _job(admin_user) -> ReevaluationJob:
    since = timezone.now() - timezone.timedelta(days=1)
    return ReevaluationJob.objects.create(days=1, since=since, created_by=admin_user)


def _evaluated_sessions(workload, count) -> list:
    sessions = [make_session(workload) for _ in range(count)]
    for session in sessions:
        events_evaluate(**id_range(add_events(session, ("tool_call", 1, {"tool": "crm-api"}))))
    return sessions


def test_a_step_costs_the_same_queries_for_one_session_or_many(workload, admin_user):
    _evaluated_sessions(workload, 1)
    with CaptureQueriesContext(connection) as one:
        reevaluation_step(job_id=_job(admin_user).pk)
    last = _evaluated_sessions(workload, 4)[-1]
    with CaptureQueriesContext(connection) as five:
        job = reevaluation_step(job_id=_job(admin_user).pk)
    assert job.cursor == last.pk  # all five sessions replayed in this step
    assert len(five) == len(one)


def test_a_step_leaves_pending_events_to_live_evaluation(workload, admin_user):
    session = make_session(workload)
    events_evaluate(**id_range(add_events(session, ("tool_call", 1, {"tool": "crm-api"}))))
    add_events(session, ("tool_call", 2, {"tool": "send-email"}))  # ungranted, not evaluated
    job = reevaluation_step(job_id=_job(admin_user).pk)
    assert job.cursor == session.pk
    assert not Finding.objects.filter(tool="send-email").exists()


def test_a_step_on_a_gated_workload_costs_the_same_queries_too(workload, admin_user):
    """The gate check reads each session's id and source: both come with the batch's query."""
    from workloads.services import workload_require_session_approval

    workload_require_session_approval(workload=workload, required=True, by=None, reason="Test")
    _evaluated_sessions(workload, 1)
    with CaptureQueriesContext(connection) as one:
        reevaluation_step(job_id=_job(admin_user).pk)
    _evaluated_sessions(workload, 4)
    with CaptureQueriesContext(connection) as five:
        reevaluation_step(job_id=_job(admin_user).pk)
    assert len(five) == len(one)
