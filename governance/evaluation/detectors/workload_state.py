"""Activity of a workload that should be doing nothing (suspended, retired or unclassified),
or nothing outside the sessions approved one by one (its sessions gated by a containment)."""

from __future__ import annotations

from datetime import datetime

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import (
    EventData,
    FindingDraft,
    PolicySnapshot,
    lateness_details,
    policy_moment,
    status_at,
)


def check_workload_status(event: EventData, policy: PolicySnapshot) -> FindingDraft | None:
    status = status_at(policy, policy_moment(event, policy))
    if status == "active":
        return None
    kind = "unclassified_workload_use" if status == "draft" else "suspended_workload_use"
    what = "an unclassified (draft)" if status == "draft" else f"a {status}"
    return FindingDraft(
        kind=kind,
        key=kind,
        severity=severity_for(kind, policy.tier_position),
        summary=f"Activity reported for {what} workload.",
        evidence=(event.id,),
        occurred_at=event.occurred_at,
        tool=event.tool,
        details={"workload_status": status},
    )


def _within(moment: datetime, windows) -> bool:
    return any(start <= moment and (end is None or moment < end) for start, end in windows)


def check_session_gate(
    event: EventData,
    policy: PolicySnapshot,
    approvals: tuple[tuple[datetime, datetime], ...],
    session: str,
) -> FindingDraft | None:
    """A tool call while the workload's sessions needed an approval, in a session that had
    none then: a runtime that did not ask the decision endpoint, or ignored its answer."""
    if event.type != "tool_call" or not event.tool:
        return None
    moment = policy_moment(event, policy)
    if not _within(moment, policy.session_gates) or _within(moment, approvals):
        return None
    kind = "unapproved_session_use"
    return FindingDraft(
        kind=kind,
        key=kind,
        severity=severity_for(kind, policy.tier_position),
        summary=(
            f"Called {event.tool} in session {session[:80]}, which had no approval while the "
            "workload's sessions needed one."
        ),
        evidence=(event.id,),
        occurred_at=event.occurred_at,
        tool=event.tool,
        details={"session": session[:200], **lateness_details(event, moment, policy)},
    )
