"""The Celery app: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("mandate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task modules inside sub-packages of the project package (not apps of their own).
app.autodiscover_tasks(["governance.approvals", "governance.decisions", "governance.evaluation"])
# Beat entries come from governance/schedule.py through settings.CELERY_BEAT_SCHEDULE.
