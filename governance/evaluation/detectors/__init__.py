"""Detectors: pure functions over plain data, one module per family."""

from governance.evaluation.detectors.access import check_tool_access
from governance.evaluation.detectors.combinations import check_session_combination
from governance.evaluation.detectors.drift import check_drift
from governance.evaluation.detectors.limits import check_budgets, check_idle_gap, check_overrun
from governance.evaluation.detectors.loops import check_loop
from governance.evaluation.detectors.types import (
    EventData,
    ExceptionWindow,
    FindingDraft,
    GrantWindow,
    Limits,
    PolicySnapshot,
    limits_at,
    policy_moment,
)
from governance.evaluation.detectors.workload_state import (
    check_session_gate,
    check_workload_status,
)

__all__ = [
    "EventData",
    "ExceptionWindow",
    "FindingDraft",
    "GrantWindow",
    "Limits",
    "PolicySnapshot",
    "check_budgets",
    "check_drift",
    "check_idle_gap",
    "check_loop",
    "check_overrun",
    "check_session_combination",
    "check_session_gate",
    "check_tool_access",
    "check_workload_status",
    "limits_at",
    "policy_moment",
]
