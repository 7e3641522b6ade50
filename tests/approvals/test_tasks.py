from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from governance.approvals import tasks
from governance.celery import app as celery_app
from governance.schedule import BEAT_SCHEDULE
from tests.factories import EntitlementFactory
from workloads.models import Tool

APPROVAL_TASKS = {
    "approvals.requests_remind",
    "approvals.requests_expire",
    "approvals.grants_warn_expiring",
    "approvals.grants_expire",
}


def test_every_approvals_beat_entry_is_a_registered_task_with_an_expiry():
    entries = {e["task"]: e for e in BEAT_SCHEDULE.values() if e["task"].startswith("approvals.")}
    assert set(entries) == APPROVAL_TASKS
    for name, entry in entries.items():
        assert name in celery_app.tasks
        assert 0 < entry["options"]["expires"] <= entry["schedule"]
    assert "approvals-grants-expire" in celery_app.conf.beat_schedule


@pytest.mark.django_db
def test_the_grant_tasks_call_their_services(read_workload, django_capture_on_commit_callbacks):
    EntitlementFactory(
        workload=read_workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=timezone.now() + timedelta(hours=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.grants_warn_expiring.delay().get() == 1
    assert len(mail.outbox) == 1
    assert tasks.grants_expire.delay().get() == 0
