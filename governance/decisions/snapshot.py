"""The compiled policy snapshot: plain dicts and sets, keyed by policy version.

Built from plain rows (`snapshot_build`, pure, used by tests and benchmarks) or from the
database (`snapshot_load`). Grants, extensions and exceptions keep their own validity windows
as epoch seconds, so an expiry takes effect at its exact instant without a recompile.

Each process holds one snapshot (`SnapshotHolder`). How a process learns of a new version:
- a change in this process marks the holder dirty at once (`policy_version_bump` calls
  `snapshot_mark_dirty`), so the next decision here re-reads the version from the database;
- after commit the new version is published to Redis (SET if higher, and PUBLISH on the same
  key); every process's listener thread hears it and makes its next decision re-read the
  version: a change, revocations included, reaches every process at once (milliseconds);
- every session check also compares its snapshot's version with the published one inside
  the Lua script that checks the session, so it never acts on a stale policy;
- as the safety net (a lost message, a listener reconnecting), every process re-reads the
  published version at least every DECISIONS_VERSION_CHECK_MS (default 250 ms): the bound on
  how late a change can reach a sessionless check;
- a beat task republishes the database's version every 30 s (a publish lost to a crash).
When the version cannot be read or the snapshot cannot be compiled, the holder raises
`PolicyUnavailable` and the endpoint answers 503: it never answers from a policy it could
not confirm for longer than the check interval.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

INF = math.inf


class PolicyUnavailable(Exception):
    """The current policy cannot be known (database or cache down, unknown version)."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    id: int
    name: str
    scopes: frozenset[str]
    all_workloads: bool
    workloads: frozenset[str]
    expires_at: float

    def may_act_for(self, workload: str) -> bool:
        return self.all_workloads or workload in self.workloads


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """A dynamic combination rule; `encoded` is its form for the Lua script."""

    slug: str
    name: str
    effect: str
    groups: tuple[frozenset[str], ...]
    encoded: str


@dataclass(slots=True)
class WorkloadEntry:
    slug: str
    status: str
    classified: bool
    # tool slug -> (valid_from, valid_until) of its active grant
    grants: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_session_seconds: int = 0
    idle_timeout_seconds: int = 0
    max_tool_calls: int = 0
    log_level: str = "metadata"
    # (valid_from, valid_until, max_session_seconds|None, max_tool_calls|None)
    extensions: tuple[tuple[float, float, int | None, int | None], ...] = ()
    # rule slug -> windows of approved exceptions
    exceptions: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # A containment: only sessions approved one by one may call tools.
    sessions_need_approval: bool = False
    # session id -> (valid_from, valid_until) of its approval (gated workloads only)
    approved_sessions: dict[str, tuple[float, float]] = field(default_factory=dict)
    # A containment narrowed the session limits: a call that names no session would escape
    # them, so it is refused.
    sessions_required: bool = False

    def session_approved_until(self, session: str | None, now: float) -> float:
        """When the session's approval ends, or 0.0 when it has none in force now."""
        window = self.approved_sessions.get(session) if session else None
        return window[1] if window is not None and window[0] <= now < window[1] else 0.0


@dataclass(slots=True)
class Snapshot:
    version: int
    compiled_at: float
    workloads: dict[str, WorkloadEntry]
    tools: dict[str, tuple[str, tuple[str, ...]]]  # slug -> (capability, labels)
    rules: tuple[RuleEntry, ...]
    rules_by_tool: dict[str, tuple[RuleEntry, ...]]
    tokens: dict[str, TokenEntry]
    # (workload, tool) -> (valid_from, valid_until, entry) for the grants of active, classified
    # workloads only: the common case is one lookup; a miss falls back to find the reason.
    grant_index: dict[tuple[str, str], tuple[float, float, WorkloadEntry]] = field(
        default_factory=dict
    )


def _ts(value) -> float:
    """Epoch seconds of a datetime (or None → +inf, an open end)."""
    return INF if value is None else value.timestamp()


def rule_encode(slug: str, groups) -> str:
    """`slug|a,b;c` — groups separated by `;`, alternatives by `,` (labels hold neither)."""
    return slug + "|" + ";".join(",".join(sorted(group)) for group in groups)


def tool_labels(slug: str, capability: str) -> tuple[str, ...]:
    return (capability, f"tool:{slug}")


def snapshot_build(
    *,
    version: int,
    workloads: list[dict],
    tools: list[dict],
    grants: list[dict],
    rules: list[dict],
    extensions: Sequence[dict] = (),
    exceptions: Sequence[dict] = (),
    session_approvals: Sequence[dict] = (),
    tokens: Sequence[dict] = (),
    compiled_at: float | None = None,
) -> Snapshot:
    """Compile plain rows. Datetimes may be datetimes or epoch numbers (None = open end).

    workloads: slug, status, classified, max_session_seconds, idle_timeout_seconds,
      max_tool_calls, log_level, sessions_need_approval and sessions_required (optional);
      tools: slug, capability;
      grants (active only): workload, tool, valid_from, valid_until; rules (enabled, dynamic or
      both): slug, name, effect, groups; extensions / exceptions / session approvals (active
      only): workload, valid_from, valid_until and their values (a session approval: session).
    """

    def ts(value):
        return value if isinstance(value, int | float) else _ts(value)

    entries = {
        row["slug"]: WorkloadEntry(
            slug=row["slug"],
            status=row["status"],
            classified=row["classified"],
            max_session_seconds=row.get("max_session_seconds") or 0,
            idle_timeout_seconds=row.get("idle_timeout_seconds") or 0,
            max_tool_calls=row.get("max_tool_calls") or 0,
            log_level=row.get("log_level") or "metadata",
            sessions_need_approval=bool(row.get("sessions_need_approval")),
            sessions_required=bool(row.get("sessions_required")),
        )
        for row in workloads
    }
    tool_map = {
        row["slug"]: (row["capability"], tool_labels(row["slug"], row["capability"]))
        for row in tools
    }
    for row in grants:
        entry = entries.get(row["workload"])
        if entry is not None and row["tool"] in tool_map:
            entry.grants[row["tool"]] = (ts(row["valid_from"]), ts(row["valid_until"]))
    extension_lists: dict[str, list] = {}
    for row in extensions:
        extension_lists.setdefault(row["workload"], []).append(
            (
                ts(row["valid_from"]),
                ts(row["valid_until"]),
                row.get("max_session_seconds"),
                row.get("max_tool_calls"),
            )
        )
    for slug, items in extension_lists.items():
        if slug in entries:
            entries[slug].extensions = tuple(items)
    for row in exceptions:
        entry = entries.get(row["workload"])
        if entry is not None:
            window = (ts(row["valid_from"]), ts(row["valid_until"]))
            entry.exceptions[row["rule"]] = (*entry.exceptions.get(row["rule"], ()), window)
    for row in session_approvals:
        entry = entries.get(row["workload"])
        if entry is not None and entry.sessions_need_approval:
            window = (ts(row["valid_from"]), ts(row["valid_until"]))
            entry.approved_sessions[row["session"]] = window
    rule_entries = tuple(
        RuleEntry(
            slug=row["slug"],
            name=row["name"],
            effect=row["effect"],
            groups=tuple(frozenset(group) for group in row["groups"]),
            encoded=rule_encode(row["slug"], row["groups"]),
        )
        for row in rules
    )
    rules_by_tool = {}
    for slug, (_capability, labels) in tool_map.items():
        touching = tuple(
            rule for rule in rule_entries if any(group & set(labels) for group in rule.groups)
        )
        if touching:
            rules_by_tool[slug] = touching
    token_map = {
        row["token_hash"]: TokenEntry(
            id=row["id"],
            name=row["name"],
            scopes=frozenset(row["scopes"]),
            all_workloads=row["all_workloads"],
            workloads=frozenset(row.get("workloads", ())),
            expires_at=ts(row.get("expires_at")),
        )
        for row in tokens
    }
    grant_index = {
        (slug, tool): (*window, entry)
        for slug, entry in entries.items()
        if entry.status == "active" and entry.classified
        for tool, window in entry.grants.items()
    }
    return Snapshot(
        grant_index=grant_index,
        version=version,
        compiled_at=time.time() if compiled_at is None else compiled_at,
        workloads=entries,
        tools=tool_map,
        rules=rule_entries,
        rules_by_tool=rules_by_tool,
        tokens=token_map,
    )


def snapshot_rows() -> dict:
    """Read everything a snapshot needs, as plain rows, at one consistent version."""
    from django.db import transaction
    from django.utils import timezone

    from governance.findings.narrowing import capped, caps_in_force
    from governance.models import PolicyState, ServiceToken
    from workloads.models import (
        CombinationRule,
        Entitlement,
        RuleException,
        SessionApproval,
        SessionExtension,
        Tool,
        Workload,
    )

    def version() -> int:
        return PolicyState.objects.filter(id=1).values_list("version", flat=True).first() or 1

    for _attempt in range(5):
        with transaction.atomic():
            before = version()
            # A narrowing's caps hold over the policy and over extensions alike: capping both
            # here keeps the hot path's `max(policy, extension)` right at no cost to it.
            caps = caps_in_force()
            workloads = []
            for w in Workload.objects.select_related("tier", "session_policy"):
                policy = getattr(w, "session_policy", None)
                if policy is not None and w.tier is not None:
                    limits = policy.effective(w.tier)
                elif w.tier is not None:
                    limits = {
                        name: getattr(w.tier, name)
                        for name in (
                            "max_session_seconds",
                            "idle_timeout_seconds",
                            "max_tool_calls",
                            "logging_level",
                        )
                    }
                else:
                    limits = {}
                if w.id in caps:
                    limits = capped(limits, caps[w.id])
                workloads.append(
                    {
                        "slug": w.slug,
                        "status": w.status,
                        "classified": w.tier_id is not None,
                        "max_session_seconds": limits.get("max_session_seconds"),
                        "idle_timeout_seconds": limits.get("idle_timeout_seconds"),
                        "max_tool_calls": limits.get("max_tool_calls"),
                        "log_level": limits.get("logging_level"),
                        "sessions_need_approval": w.sessions_need_approval,
                        "sessions_required": w.id in caps,
                    }
                )
            rows = {
                "workloads": workloads,
                "tools": [
                    {"slug": slug, "capability": capability}
                    for slug, capability in Tool.objects.values_list("slug", "capability_class")
                ],
                "grants": [
                    {"workload": w, "tool": t, "valid_from": f, "valid_until": u}
                    for w, t, f, u in Entitlement.objects.filter(status="active").values_list(
                        "workload__slug", "tool__slug", "valid_from", "valid_until"
                    )
                ],
                "rules": list(
                    CombinationRule.objects.filter(
                        enabled=True, scope__in=["dynamic", "both"]
                    ).values("slug", "name", "effect", "groups")
                ),
                "extensions": [
                    {"workload": w, "valid_from": f, "valid_until": u}
                    | _extension_limits(s, c, caps.get(workload_id))
                    for workload_id, w, f, u, s, c in SessionExtension.objects.filter(
                        status="active"
                    ).values_list(
                        "workload_id",
                        "workload__slug",
                        "valid_from",
                        "valid_until",
                        "max_session_seconds",
                        "max_tool_calls",
                    )
                ],
                "exceptions": [
                    {"workload": w, "rule": r, "valid_from": f, "valid_until": u}
                    for w, r, f, u in RuleException.objects.filter(status="active").values_list(
                        "workload__slug", "rule__slug", "valid_from", "valid_until"
                    )
                ],
                "session_approvals": [
                    {"workload": w, "session": s, "valid_from": f, "valid_until": u}
                    for w, s, f, u in SessionApproval.objects.filter(
                        status="active",
                        workload__sessions_need_approval=True,
                        valid_until__gt=timezone.now(),
                    ).values_list("workload__slug", "session", "valid_from", "valid_until")
                ],
                "tokens": _token_rows(ServiceToken),
            }
            if version() == before:
                return {"version": before, **rows}
    raise PolicyUnavailable("The policy kept changing while it was compiled.")


def _extension_limits(seconds: int | None, calls: int | None, caps: dict | None) -> dict:
    """An extension's raised limits, held under the workload's narrowing caps."""
    limits = {"max_session_seconds": seconds, "max_tool_calls": calls}
    if not caps:
        return limits
    return {
        name: value if value is None or name not in caps else min(value, caps[name])
        for name, value in limits.items()
    }


def _token_rows(model) -> list[dict]:
    tokens = list(model.objects.filter(revoked_at=None).prefetch_related("workloads"))
    return [
        {
            "id": t.id,
            "name": t.name,
            "token_hash": t.token_hash,
            "scopes": t.scopes,
            "all_workloads": t.all_workloads,
            "workloads": [w.slug for w in t.workloads.all()],
            "expires_at": t.expires_at,
        }
        for t in tokens
    ]


def snapshot_load() -> Snapshot:
    return snapshot_build(**snapshot_rows())


class SnapshotHolder:
    """This process's snapshot, rebuilt when the published policy version moves."""

    def __init__(
        self, *, version_source, publish=None, loader=snapshot_load, check_interval: float = 0.25
    ):
        self._version_source = version_source
        self._publish = publish
        self._loader = loader
        self.check_interval = check_interval
        self._snapshot: Snapshot | None = None
        self._checked_at = -INF
        self._dirty = True
        self._lock = threading.Lock()

    def mark_dirty(self) -> None:
        """Re-read the version from the source of truth on the next decision."""
        self._dirty = True

    def check_soon(self) -> None:
        """Re-read the published version on the next decision (a new one was announced)."""
        self._checked_at = -INF

    def peek(self) -> Snapshot | None:
        return self._snapshot

    def current(self, *, now: float | None = None) -> Snapshot:
        """The snapshot, confirmed against the published version at most every interval."""
        now = time.monotonic() if now is None else now
        snapshot = self._snapshot
        if (
            snapshot is not None
            and not self._dirty
            and now - self._checked_at < self.check_interval
        ):
            return snapshot
        return self.refresh(now=now)

    def refresh(self, *, now: float | None = None, authoritative: bool = False) -> Snapshot:
        now = time.monotonic() if now is None else now
        with self._lock:
            authoritative = authoritative or self._dirty
            self._dirty = False
            try:
                published = self._version_source(authoritative=authoritative)
                snapshot = self._snapshot
                if snapshot is None or snapshot.version != published:
                    snapshot = self._loader()
                    if snapshot.version < published:
                        # The database is behind what was announced: unknown policy.
                        raise PolicyUnavailable(
                            f"Policy version {published} was announced but the database "
                            f"holds {snapshot.version}."
                        )
                    if snapshot.version > published and self._publish is not None:
                        self._publish(snapshot.version)
                    self._snapshot = snapshot
            except PolicyUnavailable:
                self._snapshot_failed()
                raise
            except Exception as exc:
                self._snapshot_failed()
                raise PolicyUnavailable(str(exc) or exc.__class__.__name__) from exc
            self._checked_at = now
            return snapshot

    def _snapshot_failed(self) -> None:
        # Keep the old snapshot for comparison but force the next call to check again.
        self._dirty = True
