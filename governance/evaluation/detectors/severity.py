"""Severity of a finding: a base per kind, raised in the top tier, lowered in the bottom one."""

LEVELS = ("low", "medium", "high", "critical")

BASE_SEVERITY = {
    "unentitled_tool": "high",
    "expired_grant_use": "medium",
    "suspended_workload_use": "high",
    "unclassified_workload_use": "medium",
    "forbidden_combination": "high",
    "session_overrun": "medium",
    "idle_timeout": "low",
    "budget_exceeded": "medium",
    "reasoning_loop": "medium",
    "intent_drift": "medium",
    "unapproved_session_use": "high",
}


def severity_for(kind: str, tier_position: str, *, base: str | None = None) -> str:
    level = LEVELS.index(base or BASE_SEVERITY[kind])
    if tier_position == "top":
        level += 1
    elif tier_position == "bottom":
        level -= 1
    return LEVELS[max(0, min(level, len(LEVELS) - 1))]
