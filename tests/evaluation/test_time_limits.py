"""Evaluation tasks are bounded in time, and one cut short loses nothing."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from governance.celery import app
from governance.evaluation import services
from governance.evaluation.tasks import evaluate_events
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory
from workloads.models import PendingEvaluation

pytestmark = pytest.mark.django_db


def test_every_task_has_a_soft_and_a_hard_time_limit_under_the_broker_redelivery():
    conf = app.conf
    assert conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT > 0
    assert conf.task_soft_time_limit < conf.task_time_limit
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    # A task still running when the broker redelivers it would be evaluated twice at once.
    assert visibility is None or conf.task_time_limit < visibility


def test_a_task_cut_short_by_its_soft_limit_leaves_its_events_pending(monkeypatch):
    session = make_session(ClassifiedWorkloadFactory())
    events = add_events(session, ("tool_call", 1, {"tool": "send-email"}))

    def too_slow(drafts, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "findings_record", too_slow)
    with pytest.raises(SoftTimeLimitExceeded):
        evaluate_events.apply(kwargs=id_range(events), throw=True)
    assert set(PendingEvaluation.objects.values_list("event_id", flat=True)) == {events[0].id}
    assert not Finding.objects.exists()

    monkeypatch.undo()
    evaluate_events.apply(kwargs=id_range(events), throw=True)
    assert not PendingEvaluation.objects.exists()
    assert Finding.objects.filter(session=session, kind="unentitled_tool").exists()
