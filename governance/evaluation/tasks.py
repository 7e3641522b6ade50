"""Celery tasks for evaluation. Thin: ids in, one service call out."""

from celery import shared_task
from django.db import OperationalError

RETRYING = dict(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)


@shared_task(name="mandate.evaluate_events", **RETRYING)
def evaluate_events(self, *, min_id: int, max_id: int) -> dict:
    from governance.evaluation.services import events_evaluate

    result = events_evaluate(min_id=min_id, max_id=max_id)
    return {"events": result.events, "findings": result.findings}


@shared_task(name="mandate.sweep_unevaluated", **RETRYING)
def sweep_unevaluated(self) -> int:
    from governance.evaluation.services import unevaluated_sweep

    return unevaluated_sweep()


@shared_task(name="mandate.sweep_pending_orphans", **RETRYING)
def sweep_pending_orphans(self) -> int:
    from governance.evaluation.services import pending_orphans_sweep

    return pending_orphans_sweep()


@shared_task(name="mandate.check_open_sessions", **RETRYING)
def check_open_sessions(self) -> int:
    from governance.evaluation.services import open_sessions_check

    return open_sessions_check()


@shared_task(name="mandate.check_unnamed_sessions", **RETRYING)
def check_unnamed_sessions(self) -> int:
    from governance.evaluation.services import unnamed_sessions_check

    return unnamed_sessions_check()


@shared_task(name="mandate.reevaluation_step", **RETRYING)
def reevaluation_step_task(self, *, job_id: int) -> int:
    from governance.evaluation.reevaluation import reevaluation_fail, reevaluation_step

    try:
        return reevaluation_step(job_id=job_id).done
    except OperationalError:
        raise  # retried
    except Exception as exc:
        reevaluation_fail(job_id=job_id, error=repr(exc))
        raise
