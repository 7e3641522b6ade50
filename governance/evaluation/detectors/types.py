"""Plain data the detectors read and return. No ORM: the service builds these from rows."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from workloads.combinations import RuleSpec


class EventData(NamedTuple):
    """One usage event as the detectors see it.

    A NamedTuple rather than a frozen dataclass: evaluation builds one per stored event, and
    a tuple is built from a database row several times faster.
    """

    id: int
    type: str
    occurred_at: datetime
    tool: str = ""
    arguments_hash: str = ""
    content: str = ""
    reasoning_tokens: int = 0
    duration_ms: int | None = None
    received_at: datetime | None = None  # when Mandate stored it (its own clock)


@dataclass(frozen=True)
class GrantWindow:
    """A grant of one tool, as far as validity at a moment goes."""

    tool: str
    status: str
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        if moment < self.valid_from:
            return False
        if self.valid_until is not None and moment >= self.valid_until:
            return False
        if self.status == "revoked":
            # A grant revoked later still covered what happened before the revocation.
            return self.revoked_at is not None and moment < self.revoked_at
        return True


@dataclass(frozen=True)
class ExceptionWindow:
    """An approved exception to a combination rule for this workload."""

    rule: str
    status: str
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        """Whether it covered a call at `moment`. Events are often evaluated after the fact
        (a late batch, a re-evaluation): an exception that has since expired or been revoked
        still covered what happened while it was in force."""
        if not self.valid_from <= moment < self.valid_until:
            return False
        if self.status == "revoked":
            return self.revoked_at is not None and moment < self.revoked_at
        return self.status in ("active", "expired")


@dataclass(frozen=True)
class Limits:
    max_session_seconds: int | None = None
    idle_timeout_seconds: int | None = None
    max_tool_calls: int | None = None
    max_reasoning_tokens: int | None = None
    loop_threshold: int | None = None


@dataclass(frozen=True)
class PolicySnapshot:
    """Everything the detectors need about one workload, compiled once per run."""

    workload_status: str
    purpose: str = ""
    tier_position: str = ""  # "bottom", "middle", "top", or "" when unclassified
    limits: Limits = field(default_factory=Limits)
    tools: Mapping[str, str] = field(default_factory=dict)  # catalogue: slug → capability class
    grants: tuple[GrantWindow, ...] = ()
    rules: tuple[RuleSpec, ...] = ()  # dynamic and both-scoped, enabled
    exceptions: tuple[ExceptionWindow, ...] = ()
    loop_window: int = 20
    drift_min_similarity: float = 0.1
    # When each session needed an approval (a containment): (from, until or None if standing).
    session_gates: tuple[tuple[datetime, datetime | None], ...] = ()
    # How long before its arrival an event may say it happened and be judged at that time.
    max_lateness: timedelta = timedelta(minutes=15)
    # The workload's status over time, (since, status), oldest first; empty: the current
    # status (workload_status) held throughout.
    status_changes: tuple[tuple[datetime, str], ...] = ()
    # The session limits over time, (since, limits), oldest first, the first since the
    # beginning; empty: `limits` held throughout. Extensions and narrowings start and end,
    # and a session is judged by the limits it ran under, not those of a later re-run.
    limit_changes: tuple[tuple[datetime, Limits], ...] = ()


def _since(change: tuple[datetime, object]) -> datetime:
    return change[0]


def held_at[T](changes: tuple[tuple[datetime, T], ...], moment: datetime, before: T) -> T:
    """The value of the last change at or before `moment` (`before`: none yet). A binary
    search: a workload with years of extensions is looked up several times per event."""
    index = bisect_right(changes, moment, key=_since)
    return changes[index - 1][1] if index else before


def status_at(policy: PolicySnapshot, moment: datetime) -> str:
    """The workload's status at `moment`: a re-run after a suspension must not read calls
    made while the workload was active as activity of a suspended one."""
    return held_at(policy.status_changes, moment, policy.workload_status)


def limits_at(policy: PolicySnapshot, moment: datetime) -> Limits:
    """The session limits in force at `moment`: a re-run after a narrowing must not flag
    sessions that kept to the limits of their time."""
    return held_at(policy.limit_changes, moment, policy.limits)


def _reported_at(event: EventData, policy: PolicySnapshot) -> datetime | None:
    """When the event could first have been reported: its claimed start plus how long it
    says it ran (an OpenTelemetry span is exported when it ends), that length held to the
    session window so it cannot stretch a backdate."""
    if event.received_at is None:
        return None
    longest = limits_at(policy, event.received_at).max_session_seconds or 3600
    ran = min((event.duration_ms or 0) / 1000, longest)
    return event.occurred_at + timedelta(seconds=ran)


def policy_moment(event: EventData, policy: PolicySnapshot) -> datetime:
    """When an event is judged against the policy's windows (grants, exceptions, the session
    gate and its approvals): the time it claims, but no earlier than `max_lateness` before
    it could have been reported, and no later than its arrival. The time is the reporter's
    word: a runtime that skipped the decision endpoint could otherwise backdate a call to
    before a revocation or a gate; and a clock running ahead must not date a call reported
    before a gate into it (re-evaluating such calls raised containment on calls made before
    it)."""
    reported = _reported_at(event, policy)
    if reported is None or event.received_at is None:
        return event.occurred_at
    earliest = event.received_at - policy.max_lateness - (reported - event.occurred_at)
    return min(max(event.occurred_at, earliest), event.received_at)


def lateness_details(event: EventData, moment: datetime, policy: PolicySnapshot) -> dict:
    """What a finding judged at another time than the event's claim says about it."""
    reported = _reported_at(event, policy)
    if moment == event.occurred_at or reported is None or event.received_at is None:
        return {}
    late = int((event.received_at - reported).total_seconds())
    if late > 0:
        return {"reported_late_seconds": late}
    return {"dated_ahead_seconds": -late} if late < 0 else {}


@dataclass(frozen=True)
class FindingDraft:
    """A finding the detectors propose; `key` is unique within its session."""

    kind: str
    key: str
    severity: str
    summary: str
    evidence: tuple[int, ...]
    occurred_at: datetime
    tool: str = ""
    details: Mapping = field(default_factory=dict)
