"""Activity of a workload that should be doing nothing: suspended, retired or unclassified."""

from __future__ import annotations

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import EventData, FindingDraft, PolicySnapshot


def check_workload_status(event: EventData, policy: PolicySnapshot) -> FindingDraft | None:
    status = policy.workload_status
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
