"""Compiling the rows the detectors need into plain PolicySnapshots (a constant number of
queries for the catalogue, plus one per workload for its session limits)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings

from governance.evaluation.detectors import (
    ExceptionWindow,
    GrantWindow,
    Limits,
    PolicySnapshot,
)
from workloads.models import (
    CombinationRule,
    Entitlement,
    RuleException,
    SensitivityTier,
    Tool,
    Workload,
)
from workloads.selectors import effective_session_limits
from workloads.services import rule_specs


def _tier_positions() -> dict[int, str]:
    ids = list(SensitivityTier.objects.order_by("rank").values_list("id", flat=True))
    positions = dict.fromkeys(ids, "middle")
    if len(ids) > 1:
        positions[ids[0]] = "bottom"
        positions[ids[-1]] = "top"
    return positions


def policy_snapshots(workload_ids: Iterable[int], *, at: datetime) -> dict[int, PolicySnapshot]:
    ids = set(workload_ids)
    if not ids:
        return {}
    workloads = Workload.objects.filter(id__in=ids).select_related("tier", "session_policy")
    tools = dict(Tool.objects.values_list("slug", "capability_class"))
    rules = tuple(rule_specs((CombinationRule.Scope.DYNAMIC, CombinationRule.Scope.BOTH)))
    positions = _tier_positions()
    grants = defaultdict(list)
    for row in Entitlement.objects.filter(workload_id__in=ids).values(
        "workload_id", "tool__slug", "status", "valid_from", "valid_until", "revoked_at"
    ):
        grants[row["workload_id"]].append(
            GrantWindow(
                row["tool__slug"],
                row["status"],
                row["valid_from"],
                row["valid_until"],
                row["revoked_at"],
            )
        )
    exceptions = defaultdict(list)
    for row in RuleException.objects.filter(workload_id__in=ids).values(
        "workload_id", "rule__slug", "status", "valid_from", "valid_until"
    ):
        exceptions[row["workload_id"]].append(
            ExceptionWindow(row["rule__slug"], row["status"], row["valid_from"], row["valid_until"])
        )
    snapshots = {}
    for workload in workloads:
        if workload.tier_id is None:
            limits = Limits()
        else:
            values = effective_session_limits(workload=workload, at=at)
            limits = Limits(**{name: values[name] for name in Limits.__dataclass_fields__})
        snapshots[workload.id] = PolicySnapshot(
            workload_status=workload.status,
            purpose=workload.purpose,
            tier_position=positions.get(workload.tier_id, "") if workload.tier_id else "",
            limits=limits,
            tools=tools,
            grants=tuple(grants[workload.id]),
            rules=rules,
            exceptions=tuple(exceptions[workload.id]),
            loop_window=settings.MANDATE_LOOP_WINDOW,
            drift_min_similarity=settings.MANDATE_DRIFT_MIN_SIMILARITY,
        )
    return snapshots
