"""The Celery app: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("mandate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Concerns that live in packages under governance/ (not apps) register their tasks here.
app.autodiscover_tasks(["governance.approvals", "governance.decisions"])


@app.on_after_configure.connect
def _beat_schedule(sender, **_kwargs) -> None:
    from governance.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = {**BEAT_SCHEDULE, **(sender.conf.beat_schedule or {})}
