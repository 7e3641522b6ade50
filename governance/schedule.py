"""Celery beat entries. Every entry carries `expires` so a backlog never piles up."""

BEAT_SCHEDULE: dict[str, dict] = {}

BEAT_SCHEDULE["decisions-publish-policy-version"] = {
    "task": "governance.decisions.tasks.decisions_publish_policy_version",
    "schedule": 30.0,
    "options": {"expires": 25},
}
