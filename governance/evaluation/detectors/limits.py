"""Session limits: the inference window, idle timeout, tool-call and reasoning-token budgets."""

from __future__ import annotations

from datetime import datetime

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import FindingDraft, PolicySnapshot


def check_overrun(
    started_at: datetime | None,
    moment: datetime,
    policy: PolicySnapshot,
    evidence: tuple[int, ...] = (),
) -> FindingDraft | None:
    """The session is still active past its inference window at `moment`."""
    limit = policy.limits.max_session_seconds
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
) -> FindingDraft | None:
    """Nothing happened for longer than the idle timeout, between `previous` and `moment`."""
    limit = policy.limits.idle_timeout_seconds
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
) -> list[FindingDraft]:
    """Budgets crossed by the running totals (checked after each event)."""
    drafts = []
    for budget, used, limit in (
        ("tool_calls", tool_calls, policy.limits.max_tool_calls),
        ("reasoning_tokens", reasoning_tokens, policy.limits.max_reasoning_tokens),
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
