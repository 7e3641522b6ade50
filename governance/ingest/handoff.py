"""The contract with evaluation: one Celery message per stored batch, published after commit.

    celery_app.send_task("mandate.evaluate_events", kwargs={"min_id": …, "max_id": …})

min_id/max_id bound the new UsageEvent ids of the batch (other batches' rows may interleave;
the evaluator reads unevaluated events in the range). Publishing never fails ingestion: with
the broker down the events are already committed, the request still answers 2xx, a warning
is logged, and evaluation's periodic sweeper enqueues whatever is left unevaluated. Publishing
is bounded: one retry (a pooled connection may be stale after a broker restart), short
intervals, and the broker's connect timeout (CELERY_BROKER_CONNECTION_TIMEOUT and the Redis
transport's socket_connect_timeout, set in settings).
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from governance.celery import app as celery_app

EVALUATE_TASK = "mandate.evaluate_events"
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
log = logging.getLogger(__name__)


def evaluation_enqueue(*, min_id: int, max_id: int) -> bool:
    """Publish the evaluation task for an id range; False (and a warning) if the broker fails."""
    try:
        celery_app.send_task(
            EVALUATE_TASK,
            kwargs={"min_id": min_id, "max_id": max_id},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except Exception as error:  # any broker failure: the sweeper covers it
        log.warning(
            "Could not enqueue evaluation of events %s..%s (left for the sweeper): %s",
            min_id,
            max_id,
            error,
        )
        return False
    return True


def evaluation_enqueue_on_commit(*, min_id: int, max_id: int) -> None:
    transaction.on_commit(partial(evaluation_enqueue, min_id=min_id, max_id=max_id))
