"""Celery beat entries. Every entry carries `expires` so a backlog never piles up."""

BEAT_SCHEDULE: dict[str, dict] = {}

# Approvals: remind approvers and expire stale requests; warn owners and expire grants.
BEAT_SCHEDULE["approvals-requests-remind"] = {
    "task": "approvals.requests_remind",
    "schedule": 15 * 60,
    "options": {"expires": 14 * 60},
}
BEAT_SCHEDULE["approvals-requests-expire"] = {
    "task": "approvals.requests_expire",
    "schedule": 5 * 60,
    "options": {"expires": 4 * 60},
}
BEAT_SCHEDULE["approvals-grants-warn-expiring"] = {
    "task": "approvals.grants_warn_expiring",
    "schedule": 60 * 60,
    "options": {"expires": 55 * 60},
}
BEAT_SCHEDULE["approvals-grants-expire"] = {
    "task": "approvals.grants_expire",
    "schedule": 60,
    "options": {"expires": 55},
}
BEAT_SCHEDULE["decisions-publish-policy-version"] = {
    "task": "governance.decisions.tasks.decisions_publish_policy_version",
    "schedule": 30.0,
    "options": {"expires": 25},
}
# Evaluation: re-enqueue events stored while the broker was down; find silent sessions.
BEAT_SCHEDULE["sweep-unevaluated-events"] = {
    "task": "mandate.sweep_unevaluated",
    "schedule": 60.0,
    "options": {"expires": 50},
}
BEAT_SCHEDULE["sweep-pending-orphans"] = {
    "task": "mandate.sweep_pending_orphans",
    "schedule": 60 * 60,
    "options": {"expires": 55 * 60},
}
# Ingestion: fold OTLP sessions whose fold after their batch failed (governance/ingest/traces).
BEAT_SCHEDULE["fold-traces"] = {
    "task": "mandate.fold_traces",
    "schedule": 60.0,
    "options": {"expires": 50},
}
BEAT_SCHEDULE["check-open-sessions"] = {
    "task": "mandate.check_open_sessions",
    "schedule": 60.0,
    "options": {"expires": 50},
}
# OpenTelemetry sessions no span named in time: check them against the session gate.
BEAT_SCHEDULE["check-unnamed-sessions"] = {
    "task": "mandate.check_unnamed_sessions",
    "schedule": 300.0,
    "options": {"expires": 290},
}
