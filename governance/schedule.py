"""Celery beat entries. Every entry carries `expires` so a backlog never piles up."""

BEAT_SCHEDULE: dict[str, dict] = {}

# Evaluation: re-enqueue events stored while the broker was down; find silent sessions.
BEAT_SCHEDULE["sweep-unevaluated-events"] = {
    "task": "mandate.sweep_unevaluated",
    "schedule": 60.0,
    "options": {"expires": 50},
}
BEAT_SCHEDULE["check-open-sessions"] = {
    "task": "mandate.check_open_sessions",
    "schedule": 60.0,
    "options": {"expires": 50},
}
