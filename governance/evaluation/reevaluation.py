"""Re-running the detectors over the sessions of the last N days, in bounded steps.

Each step replays up to `batch` sessions from their evaluated events into a fresh state (under
the session's lock, so live evaluation of newer events applies on top), records new findings,
advances the job's cursor and enqueues the next step after commit. A redelivered step locks the
job row, sees the cursor moved, and continues from there.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.audit import audit_record
from governance.errors import DomainError, NotAllowed
from governance.evaluation import store
from governance.evaluation.services import (
    findings_record,
    sessions_apply,
)
from governance.models import ReevaluationJob
from workloads.models import Session

MAX_DAYS = 365


def _sessions_in_window(since):
    return Session.objects.filter(Q(last_event_at__gte=since) | Q(started_at__gte=since))


def _enqueue_step(job_id: int) -> None:
    from governance.evaluation.tasks import reevaluation_step_task

    reevaluation_step_task.delay(job_id=job_id)


@transaction.atomic
def reevaluation_start(*, days: int, by) -> ReevaluationJob:
    if not by.has_perm("governance.run_reevaluation"):
        raise NotAllowed("Only an IAM admin may re-run the detectors.")
    if not 1 <= days <= MAX_DAYS:
        raise DomainError(f"Choose between 1 and {MAX_DAYS} days.", field="days")
    since = timezone.now() - timedelta(days=days)
    job = ReevaluationJob.objects.create(
        days=days,
        since=since,
        total=_sessions_in_window(since).count(),
        created_by=by,
    )
    audit_record(by=by, action="reevaluation.start", obj=job, after={"days": days})
    transaction.on_commit(lambda: _enqueue_step(job.id))
    return job


def reevaluation_step(*, job_id: int, batch: int = 25) -> ReevaluationJob:
    with transaction.atomic():
        job = ReevaluationJob.objects.select_for_update().get(pk=job_id)
        if job.status in (ReevaluationJob.Status.DONE, ReevaluationJob.Status.FAILED):
            return job
        sessions = list(
            _sessions_in_window(job.since)
            .select_for_update()
            .filter(id__gt=job.cursor)
            .order_by("id")
            .only(*store.SESSION_FIELDS)[:batch]
        )
        drafts = sessions_apply(sessions, store.session_events(sessions), fresh=True)
        job.findings_raised += len(findings_record(drafts))
        job.done = min(job.total, job.done + len(sessions)) if job.total else len(sessions)
        if sessions:
            job.cursor = sessions[-1].id
        if len(sessions) < batch:
            job.status = ReevaluationJob.Status.DONE
            job.done = job.total
            job.finished_at = timezone.now()
        else:
            job.status = ReevaluationJob.Status.RUNNING
            transaction.on_commit(lambda: _enqueue_step(job.id))
        job.save()
        return job


def reevaluation_fail(*, job_id: int, error: str) -> None:
    """Mark a job failed so its progress bar stops and says why."""
    ReevaluationJob.objects.filter(pk=job_id).exclude(status=ReevaluationJob.Status.DONE).update(
        status=ReevaluationJob.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
