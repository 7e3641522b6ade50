"""The Celery app: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("mandate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task modules inside sub-packages of the project package (not apps of their own).
app.autodiscover_tasks(
    ["governance.approvals", "governance.decisions", "governance.evaluation", "governance.ingest"]
)
# Beat entries come from governance/schedule.py through settings.CELERY_BEAT_SCHEDULE.


@signals.worker_init.connect
def _worker_database_connections(**kwargs) -> None:
    """Worker processes keep one plain connection each, across tasks.

    The psycopg pool suits the threaded web server; in a prefork worker Celery's Django fixup
    closes the whole pool around every task (a new pool, new connections and a cold server
    backend for each task: half the evaluation throughput). Runs in the worker's main process
    before it forks its pool. `close_old_connections` after each task (Django's request-end
    rule) still drops a connection that failed or outlived WORKER_CONN_MAX_AGE.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    database.get("OPTIONS", {}).pop("pool", None)
    database["CONN_MAX_AGE"] = settings.WORKER_CONN_MAX_AGE
    signals.task_postrun.connect(_worker_connections_tidy)


# The fixup reads this when the worker imports its modules: it then closes connections only
# every this many tasks, leaving the per-task rule to `_worker_connections_tidy`.
app.conf.CELERY_DB_REUSE_MAX = 1_000_000


def _worker_connections_tidy(task=None, **kwargs) -> None:
    """After each task a worker runs (not eager calls, which run inside their caller)."""
    from django.db import close_old_connections

    if not getattr(getattr(task, "request", None), "is_eager", False):
        close_old_connections()
