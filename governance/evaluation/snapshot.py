"""Compiling the rows the detectors need into plain PolicySnapshots (a constant number of
queries, however many workloads), and a per-process cache of them keyed on the policy version.

A snapshot carries time with it: grants, exceptions, gates, the workload's status and its
session limits (policy edits, extensions and narrowings start and end) each say what held
when, so events are judged at their own time, whenever they are evaluated.

`policy_snapshots_cached` is what evaluation uses: one query for the version, then the
compiled snapshot of each workload from this process's memory while it is still good —
- the policy version is the one it was compiled under (every change to workloads, grants,
  rules, exceptions, extensions, narrowings or session policies bumps it, in the change's
  transaction);
- it is younger than MANDATE_EVALUATION_SNAPSHOT_SECONDS (the safety net for a change made
  without a bump, e.g. a row edited by hand).
A version read first, rows after, in READ COMMITTED: a snapshot is never older than its key.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings

from governance.evaluation.detectors import (
    ExceptionWindow,
    GrantWindow,
    Limits,
    PolicySnapshot,
)
from governance.evaluation.detectors.types import held_at
from governance.findings.narrowing import capped
from governance.models import AuditEvent, ContainmentAction
from governance.policy_version import policy_version_current
from workloads.models import (
    CombinationRule,
    Entitlement,
    RuleException,
    SensitivityTier,
    SessionExtension,
    SessionLimitsChange,
    Tool,
    Workload,
)
from workloads.selectors import EXTENDED_LIMITS, extended, extension_limits
from workloads.services import rule_specs


def _tier_positions() -> dict[int, str]:
    ids = list(SensitivityTier.objects.order_by("rank").values_list("id", flat=True))
    positions = dict.fromkeys(ids, "middle")
    if len(ids) > 1:
        positions[ids[0]] = "bottom"
        positions[ids[-1]] = "top"
    return positions


BEGINNING = datetime.min.replace(tzinfo=UTC)
GATE_SET, GATE_LIFTED = "workload.sessions_gated", "workload.sessions_ungated"
# A workload's status changes, as workloads.services.workload_set_status audits them.
STATUS_SET = tuple(f"workload.{status}" for status in Workload.Status.values)


def _workload_history(ids: set[int]) -> list[tuple[str, str, datetime, dict | None, dict | None]]:
    """The audit trail's gate and status changes of these workloads, oldest first (one
    query): the trail only grows, so it tells what held at any past moment."""
    return list(
        AuditEvent.objects.filter(
            object_type="workloads.workload",
            object_id__in=[str(i) for i in ids],
            action__in=(GATE_SET, GATE_LIFTED, *STATUS_SET),
        )
        .order_by("id")
        .values_list("object_id", "action", "created_at", "before", "after")
    )


def status_changes(history) -> dict[int, tuple[tuple[datetime, str], ...]]:
    """Each workload's status over time: (since, status), the first since the beginning
    (the status before its first audited change). Workloads never changed have none: their
    current status holds throughout."""
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for object_id, action, at, before, after in history:
        if action not in STATUS_SET:
            continue
        workload_id = int(object_id)
        if not changes[workload_id] and (before or {}).get("status"):
            changes[workload_id].append((BEGINNING, before["status"]))
        changes[workload_id].append((at, (after or {}).get("status") or action.split(".", 1)[1]))
    return {workload_id: tuple(items) for workload_id, items in changes.items()}


def session_gate_intervals(
    ids: set[int], history=None
) -> dict[int, list[tuple[datetime, datetime | None]]]:
    """When each workload's sessions needed an approval: (set, lifted or None), read from the
    audit trail, which only grows (containment records can be merged away with a finding).
    Each starts MANDATE_SESSION_GATE_GRACE_SECONDS late: calls allowed just before the gate
    was set may land just after it."""
    grace = timedelta(seconds=settings.MANDATE_SESSION_GATE_GRACE_SECONDS)
    if history is None:
        history = _workload_history(ids)
    intervals: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    since: dict[int, datetime] = {}
    for object_id, action, at, _before, _after in history:
        if action not in (GATE_SET, GATE_LIFTED):
            continue
        workload_id = int(object_id)
        if action == GATE_SET:
            since.setdefault(workload_id, at + grace)
        elif workload_id in since:
            start = since.pop(workload_id)
            if start < at:
                intervals[workload_id].append((start, at))
    for workload_id, start in since.items():
        intervals[workload_id].append((start, None))
    return intervals


# A window in which limits were raised (an extension) or capped (a narrowing):
# (from, until or None if standing, the limits it raises or caps).
LimitWindow = tuple[datetime, datetime | None, dict[str, int]]
WindowsByWorkload = dict[int, list[LimitWindow]]


def _limit_windows(ids: set[int]) -> tuple[WindowsByWorkload, WindowsByWorkload]:
    """Every extension's and every narrowing's window, reversed and ended ones included (two
    queries): what held at a past moment is what evaluation asks."""
    raises: WindowsByWorkload = defaultdict(list)
    for extension in SessionExtension.objects.filter(workload_id__in=ids).only(
        "workload_id", "status", "valid_from", "valid_until", "revoked_at", *EXTENDED_LIMITS
    ):
        until = extension.valid_until
        if extension.status == SessionExtension.Status.REVOKED:
            until = min(until, extension.revoked_at or extension.valid_from)
        raises[extension.workload_id].append(
            (extension.valid_from, until, extension_limits(extension))
        )
    caps: WindowsByWorkload = defaultdict(list)
    for workload_id, created_at, reversed_at, limits in ContainmentAction.objects.filter(
        workload_id__in=ids, action=ContainmentAction.Action.NARROW_SESSIONS
    ).values_list("workload_id", "created_at", "reversed_at", "limits"):
        caps[workload_id].append((created_at, reversed_at, limits))
    return raises, caps


def _policy_history(ids: set[int]) -> dict[int, list[tuple[datetime, dict]]]:
    """Each workload's recorded session limits, oldest first (one query)."""
    history: dict[int, list[tuple[datetime, dict]]] = defaultdict(list)
    for workload_id, since, limits in (
        SessionLimitsChange.objects.filter(workload_id__in=ids)
        .order_by("workload_id", "effective_from", "id")
        .values_list("workload_id", "effective_from", "limits")
    ):
        history[workload_id].append((since, limits))
    return history


def _policy_over_time(
    current: dict, history: list[tuple[datetime, dict]]
) -> tuple[dict, list[tuple[datetime, dict]]]:
    """The policy from the beginning and its later changes. The first recorded limits held
    before their record too (nothing older is known); today's policy stands from the last
    record (it is that record, unless a row was edited by hand). A limit a record lacks (one
    added since) is today's."""
    if not history:
        return current, []
    changes = [(since, {**current, **limits}) for since, limits in history[:-1]]
    changes.append((history[-1][0], current))
    return changes[0][1], changes[1:]


def limits_over_time(
    base: dict,
    raises: Iterable[LimitWindow],
    caps: Iterable[LimitWindow],
    policy_changes: Iterable[tuple[datetime, dict]] = (),
) -> tuple[tuple[datetime, Limits], ...]:
    """The limits in force from each moment they changed, the first from the beginning: the
    session policy (`base`, then each of `policy_changes` from its moment), raised by the
    extensions valid then, held under the caps of the narrowings in force then. One sweep
    over the windows' starts and ends, holding only the windows open at each."""
    edges: dict[datetime, list[tuple[bool, int, LimitWindow]]] = defaultdict(list)
    for raising, windows in ((True, raises), (False, caps)):
        for n, window in enumerate(windows):
            start, until, _values = window
            edges[start].append((raising, n, window))
            if until is not None:
                edges[until].append((raising, n, window))
    policies = dict(policy_changes)  # the later of two changes at one moment stands
    for moment in policies:
        edges.setdefault(moment, [])
    open_raises: dict[int, LimitWindow] = {}
    open_caps: dict[int, LimitWindow] = {}
    changes: list[tuple[datetime, Limits]] = []
    for moment in (BEGINNING, *sorted(edges)):
        base = policies.get(moment, base)
        for raising, n, window in edges.get(moment, ()):
            held = open_raises if raising else open_caps
            start, until, _values = window
            if until is not None and until <= moment:
                held.pop(n, None)
            elif start <= moment:
                held[n] = window
        values = dict(base)
        for _start, _until, granted in open_raises.values():
            values = extended(values, granted)
        lowest: dict[str, int] = {}
        for _start, _until, caps_of_window in open_caps.values():
            for name, cap in caps_of_window.items():
                lowest[name] = min(cap, lowest.get(name, cap))
        values = capped(values, lowest)
        limits = Limits(**{name: values[name] for name in Limits.__dataclass_fields__})
        if not changes or changes[-1][1] != limits:
            changes.append((moment, limits))
    return tuple(changes)


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
    for rule_row in RuleException.objects.filter(workload_id__in=ids).values(
        "workload_id", "rule__slug", "status", "valid_from", "valid_until", "revoked_at"
    ):
        exceptions[rule_row["workload_id"]].append(
            ExceptionWindow(
                rule_row["rule__slug"],
                rule_row["status"],
                rule_row["valid_from"],
                rule_row["valid_until"],
                rule_row["revoked_at"],
            )
        )
    history = _workload_history(ids)
    gates = session_gate_intervals(ids, history)
    statuses = status_changes(history)
    raises, caps = _limit_windows(ids)
    policies = _policy_history(ids)
    snapshots = {}
    for workload in workloads:
        limit_changes: tuple[tuple[datetime, Limits], ...] = ()
        if workload.tier_id is None:
            limits = Limits()
        else:
            base, policy_changes = _policy_over_time(
                workload.session_policy.effective(workload.tier), policies.get(workload.id, [])
            )
            limit_changes = limits_over_time(
                base, raises.get(workload.id, ()), caps.get(workload.id, ()), policy_changes
            )
            limits = held_at(limit_changes, at, limit_changes[0][1])
            if len(limit_changes) == 1:
                limit_changes = ()  # the same limits throughout
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
            session_gates=tuple(gates[workload.id]),
            status_changes=statuses.get(workload.id, ()),
            limit_changes=limit_changes,
            max_lateness=timedelta(seconds=settings.MANDATE_EVENT_MAX_LATENESS_SECONDS),
        )
    return snapshots


# workload id -> (policy version, monotonic deadline, snapshot); per process (and per worker
# pool process: prefork children each fill their own after the fork).
_cache: dict[int, tuple[int, float, PolicySnapshot]] = {}
_cache_lock = threading.Lock()


def snapshot_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def policy_snapshots_cached(
    workload_ids: Iterable[int], *, at: datetime, version: int | None = None
) -> dict[int, PolicySnapshot]:
    """`policy_snapshots`, served from this process's cache while version and time allow.

    `version`: the policy version if the caller has just read it (else it is read here).
    """
    ids = set(workload_ids)
    max_age = settings.MANDATE_EVALUATION_SNAPSHOT_SECONDS
    if not ids or max_age <= 0:
        return policy_snapshots(ids, at=at)
    if version is None:
        version = policy_version_current()
    now = time.monotonic()
    snapshots = {}
    with _cache_lock:
        for workload_id in ids:
            entry = _cache.get(workload_id)
            if entry is not None and entry[0] == version and entry[1] > now:
                snapshots[workload_id] = entry[2]
    missing = ids - snapshots.keys()
    if missing:
        fresh = policy_snapshots(missing, at=at)
        with _cache_lock:
            for workload_id, snapshot in fresh.items():
                _cache[workload_id] = (version, now + max_age, snapshot)
        snapshots.update(fresh)
    return snapshots
