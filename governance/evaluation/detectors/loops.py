"""Reasoning loops: one call (tool + arguments) or one reasoning step repeated in a window."""

from __future__ import annotations

from datetime import datetime

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import FindingDraft, Limits, PolicySnapshot, limits_at


def check_loop(
    window: list[list],
    signature: str,
    event_id: int,
    moment: datetime,
    policy: PolicySnapshot,
    *,
    what: str,
    tool: str = "",
    limits: Limits | None = None,
) -> tuple[list[list], FindingDraft | None]:
    """Append `[signature, event_id]` to the recent-calls window; flag a repeat at threshold.

    `window` holds the last `policy.loop_window` signatures (oldest first); the new window is
    returned so the caller can keep it in the session's incremental state.
    """
    window = [*window, [signature, event_id]][-policy.loop_window :]
    threshold = (limits or limits_at(policy, moment)).loop_threshold
    if not threshold:
        return window, None
    repeats = [item_id for sig, item_id in window if sig == signature]
    if len(repeats) < threshold:
        return window, None
    label = f"{tool} with the same arguments" if what == "tool_call" else "the same reasoning step"
    draft = FindingDraft(
        kind="reasoning_loop",
        key=f"reasoning_loop:{what}:{signature[:64]}",
        severity=severity_for("reasoning_loop", policy.tier_position),
        summary=f"Repeated {label} {len(repeats)} times in the last {len(window)} steps.",
        evidence=tuple(repeats),
        occurred_at=moment,
        tool=tool,
        details={
            "signal": what,
            "repeats": len(repeats),
            "threshold": threshold,
            "window": policy.loop_window,
        },
    )
    return window, draft
