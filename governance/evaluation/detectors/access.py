"""Tool access: a call with no grant at all, or under a grant that had expired or was revoked."""

from __future__ import annotations

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import (
    EventData,
    FindingDraft,
    PolicySnapshot,
    lateness_details,
    policy_moment,
)


def check_tool_access(event: EventData, policy: PolicySnapshot) -> FindingDraft | None:
    """Unentitled tool use, or use of an expired or revoked grant, for one tool call."""
    if event.type != "tool_call" or not event.tool:
        return None
    grants = [g for g in policy.grants if g.tool == event.tool]
    moment = policy_moment(event, policy)
    if any(g.valid_at(moment) for g in grants):
        return None
    late = lateness_details(event, moment, policy)
    lapsed = [g for g in grants if g.valid_from <= moment]
    if lapsed:
        latest = max(lapsed, key=lambda g: g.valid_from)
        reason = "revoked" if latest.status == "revoked" else "expired"
        return FindingDraft(
            kind="expired_grant_use",
            key=f"expired_grant_use:{event.tool}",
            severity=severity_for("expired_grant_use", policy.tier_position),
            summary=f"Called {event.tool} under a grant that was {reason}.",
            evidence=(event.id,),
            occurred_at=event.occurred_at,
            tool=event.tool,
            details={"grant_status": reason, **late},
        )
    known = event.tool in policy.tools
    return FindingDraft(
        kind="unentitled_tool",
        key=f"unentitled_tool:{event.tool}",
        severity=severity_for("unentitled_tool", policy.tier_position),
        summary=(
            f"Called {event.tool} without a grant."
            if known
            else f"Called {event.tool}, a tool the catalogue does not know."
        ),
        evidence=(event.id,),
        occurred_at=event.occurred_at,
        tool=event.tool,
        details={"in_catalogue": known, **late},
    )
