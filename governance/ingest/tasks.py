"""Celery tasks for ingestion. Thin: one service call."""

from celery import shared_task

from governance.evaluation.tasks import RETRYING


@shared_task(name="mandate.fold_traces", **RETRYING)
def fold_traces(self) -> int:
    from governance.ingest.traces import traces_fold_pending

    return traces_fold_pending()
