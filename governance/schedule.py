"""Celery beat entries. Every entry carries `expires` so a backlog never piles up."""

BEAT_SCHEDULE: dict[str, dict] = {}
