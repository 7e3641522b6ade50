"""Approval notifications on a real Celery worker (Redis broker, the PostgreSQL test database):
the service enqueues after commit, the worker sends the mail. The worker writes its mail to a
directory (EMAIL_FILE_PATH) so this process can read what it sent."""

from pathlib import Path

import pytest
from django.db import connection

from governance.approvals import services
from tests.evaluation.worker import (
    BROKER_URL,
    broker,
    celery_worker,
    flush_broker,
    redis_reachable,
    wait_for,
)
from workloads.models import Tool

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not redis_reachable(), reason="no Redis reachable for the broker"),
]


@pytest.fixture(autouse=True)
def _eager_tasks():
    """Overrides the package's eager mode: here the tasks must travel to the worker."""
    yield


@pytest.fixture
def mailbox(tmp_path, monkeypatch) -> Path:
    if connection.vendor != "postgresql":
        pytest.skip("the worker needs a database it can share (PostgreSQL)")
    flush_broker()
    # celery_worker() hands this process's environment to the worker.
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    return tmp_path


def mail_sent(mailbox: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(mailbox.iterdir()))


def test_a_filing_and_its_approval_are_mailed_by_the_worker(
    mailbox, owner, approver, read_workload
):
    with celery_worker(), broker(BROKER_URL):
        request = services.access_request_create(
            by=owner,
            workload=read_workload,
            tools=[Tool.objects.get(slug="crm-api")],
            justification="Quarterly review.",
            duration_days=10,
        )
        # The notice goes out only while the request is pending: wait before deciding.
        filed = f"Subject: [Mandate] Request #{request.pk}: reader asks for access"
        wait_for(lambda: filed in mail_sent(mailbox), timeout=60, what="the filing notice")
        services.access_request_approve(access_request=request, by=approver, comment="Fine.")
        approved = f"Subject: [Mandate] Request #{request.pk} approved"
        wait_for(lambda: approved in mail_sent(mailbox), timeout=60, what="the approval mail")
    sent = mail_sent(mailbox)
    notice, decision = sent[sent.index(filed) :], sent[sent.index(approved) :]
    assert f"To: {approver.email}" in notice and "Quarterly review." in notice
    assert f"To: {owner.email}" in decision
    assert "Granted crm-api, valid until" in decision
