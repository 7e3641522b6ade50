"""Forbidden tool combinations within one session: the dynamic side of CombinationRule."""

from __future__ import annotations

from collections.abc import Mapping

from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.detectors.types import (
    EventData,
    FindingDraft,
    PolicySnapshot,
    policy_moment,
)
from workloads.combinations import rules_completed_by


def check_session_combination(
    used_before: Mapping[str, str], event: EventData, policy: PolicySnapshot
) -> list[FindingDraft]:
    """Rules this call completes with the tools the session already used.

    `used_before` maps tool slug → capability class for earlier calls in the session. A rule
    whose effect is `exception_required` is honoured when the workload holds an exception
    valid at the moment of the call.
    """
    if event.type != "tool_call" or not event.tool or event.tool in used_before:
        return []
    added = {event.tool: policy.tools.get(event.tool, "")}
    drafts = []
    for rule in rules_completed_by(policy.rules, used_before, added):
        if rule.effect == "exception_required" and any(
            e.rule == rule.slug and e.valid_at(policy_moment(event, policy))
            for e in policy.exceptions
        ):
            continue
        base = "critical" if rule.effect == "forbid" else "high"
        drafts.append(
            FindingDraft(
                kind="forbidden_combination",
                key=f"forbidden_combination:{rule.slug}",
                severity=severity_for("forbidden_combination", policy.tier_position, base=base),
                summary=f"Session combined tools that rule {rule.name} keeps apart.",
                evidence=(event.id,),
                occurred_at=event.occurred_at,
                tool=event.tool,
                details={"rule": rule.slug, "tools": sorted({*used_before, event.tool})},
            )
        )
    return drafts
