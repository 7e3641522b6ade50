"""Narrowing: containment that lowers a workload's session limits instead of stopping it.

A narrowing record holds caps ({limit name: highest value}) that apply over the session
policy, the tier defaults and any extension, until the record is reversed. Caps are kept on
the record rather than written into the session policy, so reversing one narrowing never
undoes another's, nor an IAM admin's own change to the policy meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from governance.errors import DomainError
from governance.models import ContainmentAction, Finding, FindingKind
from workloads.models import SessionPolicy

NARROW = ContainmentAction.Action.NARROW_SESSIONS
LIMITS = SessionPolicy.LIMIT_FIELDS
LIMIT_LABELS = {
    "max_session_seconds": "Inference window (s)",
    "idle_timeout_seconds": "Idle timeout (s)",
    "max_tool_calls": "Tool calls",
    "max_reasoning_tokens": "Reasoning tokens",
    "loop_threshold": "Loop threshold",
}
# Held at each decision (the endpoint counts them); the others are judged when usage is
# evaluated, and raise findings.
DECIDED = ("max_session_seconds", "idle_timeout_seconds", "max_tool_calls")
# The lowest cap that still lets a session work: a loop threshold of 1 would flag every call.
LOWEST = dict.fromkeys(LIMITS, 1) | {"loop_threshold": 2}
HIGHEST = 2**31 - 1  # what the session policy's own fields hold
# The limits each kind of finding speaks to, proposed at half their value in force. A loop
# also burns tool calls, the cap a decision can hold it to.
PROPOSED_FOR_KIND: dict[str, tuple[str, ...]] = {
    FindingKind.REASONING_LOOP: ("loop_threshold", "max_tool_calls"),
    FindingKind.SESSION_OVERRUN: ("max_session_seconds",),
    FindingKind.IDLE_TIMEOUT: ("idle_timeout_seconds",),
    FindingKind.BUDGET_EXCEEDED: ("max_tool_calls", "max_reasoning_tokens"),
}
# A budget finding names the budget it went over (its details' `budget`).
BUDGET_LIMITS = {"tool_calls": "max_tool_calls", "reasoning_tokens": "max_reasoning_tokens"}


def caps_in_force(workload_ids: Iterable[int] | None = None) -> dict[int, dict[str, int]]:
    """Each workload's lowest unreversed cap per limit (one query); None: every workload's."""
    caps: dict[int, dict[str, int]] = {}
    rows = ContainmentAction.objects.filter(action=NARROW, reversed_at__isnull=True)
    if workload_ids is not None:
        rows = rows.filter(workload_id__in=list(workload_ids))
    for workload_id, limits in rows.values_list("workload_id", "limits"):
        held = caps.setdefault(workload_id, {})
        for name, value in limits.items():
            held[name] = min(value, held.get(name, value))
    return caps


def narrowings_of(workload_id: int) -> list[tuple[int, str]]:
    """The workload's narrowings in force: (finding id, its caps in words), oldest first."""
    rows = ContainmentAction.objects.filter(
        action=NARROW, reversed_at__isnull=True, workload_id=workload_id
    ).order_by("created_at", "id")
    return [
        (finding_id, caps_label(limits))
        for finding_id, limits in rows.values_list("finding_id", "limits")
    ]


def narrowing_findings(workload_id: int, names) -> list[int]:
    """The findings whose narrowing in force caps any of these limits, by id."""
    rows = ContainmentAction.objects.filter(
        action=NARROW, reversed_at__isnull=True, workload_id=workload_id
    ).order_by("finding_id")
    # A finding may hold several narrowings (a merge brings them along whole): named once.
    return list(
        dict.fromkeys(
            finding_id
            for finding_id, limits in rows.values_list("finding_id", "limits")
            if set(names) & set(limits)
        )
    )


def capped(limits: Mapping[str, int | None], caps: Mapping[str, int]) -> dict:
    """`limits` with each cap applied; an unlimited value (None) takes the cap."""
    result = dict(limits)
    for name, cap in caps.items():
        value = result.get(name)
        result[name] = cap if value is None else min(value, cap)
    return result


def proposed_caps(finding: Finding, in_force: Mapping[str, int | None]) -> dict[str, int]:
    """Half of each limit in force that the finding's kind speaks to (none for other kinds:
    the reviewer chooses)."""
    proposal = {}
    names = PROPOSED_FOR_KIND.get(finding.kind, ())
    exceeded = (finding.details or {}).get("budget")
    if finding.kind == FindingKind.BUDGET_EXCEEDED and exceeded in BUDGET_LIMITS:
        names = (BUDGET_LIMITS[exceeded],)  # the budget it went over, not both
    for name in names:
        value = in_force.get(name)
        if value is not None and value > LOWEST[name]:
            proposal[name] = max(LOWEST[name], value // 2)
    return proposal


def caps_checked(requested: Mapping[str, int | None], in_force: Mapping[str, int | None]) -> dict:
    """The caps asked for, each a whole number below the limit in force: anything else would
    not narrow. Blank limits are left alone; at least one must be given."""
    unknown = set(requested) - set(LIMITS)
    if unknown:
        raise DomainError(f"Unknown session limit {', '.join(sorted(unknown))}.", field="limits")
    caps = {name: value for name, value in requested.items() if value is not None}
    if not caps:
        raise DomainError("Give at least one lower limit.", field="limits", code="required")
    for name, value in caps.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not LOWEST[name] <= value <= HIGHEST
        ):
            raise DomainError(
                f"Give a whole number from {LOWEST[name]} to {HIGHEST}.", field=name, code="invalid"
            )
        current = in_force.get(name)
        if current is not None and value >= current:
            raise DomainError(
                f"Give less than the {current} in force: this would not narrow it.",
                field=name,
                code="not_lower",
            )
    return caps


def held_below(granted: Mapping[str, int], caps: Mapping[str, int]) -> dict[str, int]:
    """The caps that hold what was granted (a longer window, say) below what it says."""
    return {name: cap for name, cap in caps.items() if name in granted and granted[name] > cap}


def caps_label(caps: Mapping[str, int]) -> str:
    """`Tool calls ≤ 50, Loop threshold ≤ 3`, in the policy's field order."""
    return ", ".join(f"{LIMIT_LABELS[name]} ≤ {caps[name]}" for name in LIMITS if name in caps)


def window_label(raised: Mapping[str, int]) -> str:
    """`Inference window (s) 3600, Tool calls 200`: what a session window raises."""
    return ", ".join(f"{LIMIT_LABELS[name]} {raised[name]}" for name in LIMITS if name in raised)


def caps_effect(caps: Mapping[str, int]) -> str:
    """What the caps change, in words: some hold at each decision, the others in evaluation."""
    decided = {name: value for name, value in caps.items() if name in DECIDED}
    judged = {name: value for name, value in caps.items() if name not in DECIDED}
    parts = ["Each call must now name its session"]
    if decided:
        parts.append(f"the next decision holds sessions to {caps_label(decided)}")
    if judged:
        parts.append(f"evaluation judges them by {caps_label(judged)}")
    return "; ".join(parts) + "."
