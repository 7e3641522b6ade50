"""Session limits: the inference window, idle timeout, tool-call and reasoning-token budgets."""

from __future__ import annotations

from datetime import datetime

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import FindingDraft, Limits, PolicySnapshot, limits_at


def check_overrun(
    started_at: datetime | None,
    moment: datetime,
    policy: PolicySnapshot,
    evidence: tuple[int, ...] = (),
    limits: Limits | None = None,
) -> FindingDraft | None:
    """The session is still active past its inference window at `moment`. `limits`: those
    to judge by (default: in force at `moment`)."""
    limit = (limits or limits_at(policy, moment)).max_session_seconds
    if started_at is None or limit is None:
        return None
    elapsed = (moment - started_at).total_seconds()
    if elapsed <= limit:
        return None
    return FindingDraft(
        kind="session_overrun",
        key="session_overrun",
        severity=severity_for("session_overrun", policy.tier_position),
        summary=f"Session ran {int(elapsed)} s, past its {limit} s inference window.",
        evidence=evidence,
        occurred_at=moment,
        details={"elapsed_seconds": int(elapsed), "limit_seconds": limit},
    )


def check_idle_gap(
    previous: datetime | None,
    moment: datetime,
    policy: PolicySnapshot,
    evidence: tuple[int, ...] = (),
    limits: Limits | None = None,
) -> FindingDraft | None:
    """Nothing happened for longer than the idle timeout, between `previous` and `moment`."""
    limit = (limits or limits_at(policy, moment)).idle_timeout_seconds
    if previous is None or limit is None:
        return None
    gap = (moment - previous).total_seconds()
    if gap <= limit:
        return None
    return FindingDraft(
        kind="idle_timeout",
        key="idle_timeout",
        severity=severity_for("idle_timeout", policy.tier_position),
        summary=f"Session sat idle {int(gap)} s, past its {limit} s idle timeout.",
        evidence=evidence,
        occurred_at=moment,
        details={"idle_seconds": int(gap), "limit_seconds": limit},
    )


def check_budgets(
    tool_calls: int,
    reasoning_tokens: int,
    policy: PolicySnapshot,
    event_id: int,
    moment: datetime,
    limits: Limits | None = None,
) -> list[FindingDraft]:
    """Budgets crossed by the running totals (checked after each event)."""
    drafts = []
    limits = limits or limits_at(policy, moment)
    for budget, used, limit in (
        ("tool_calls", tool_calls, limits.max_tool_calls),
        ("reasoning_tokens", reasoning_tokens, limits.max_reasoning_tokens),
    ):
        if limit is None or used <= limit:
            continue
        label = budget.replace("_", " ")
        drafts.append(
            FindingDraft(
                kind="budget_exceeded",
                key=f"budget_exceeded:{budget}",
                severity=severity_for("budget_exceeded", policy.tier_position),
                summary=f"Session used {used} {label}, over its budget of {limit}.",
                evidence=(event_id,),
                occurred_at=moment,
                details={"budget": budget, "used": used, "limit": limit},
            )
        )
    return drafts
