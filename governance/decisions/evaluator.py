"""Pure decision logic: a compiled snapshot and plain data in, a verdict out (no ORM, no I/O).

Two halves, so a session check costs one round trip to the shared state:
- `static_verdict` decides everything that needs no session state (workload, tool, grant,
  token binding) and, for a session check, returns the `SessionPlan` the state store applies;
- `session_verdict` applies a plan to a session's state. The Lua script in `state.py` is its
  twin for Redis; the local fallback calls it directly. Tests hold them to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from governance.decisions.snapshot import RuleEntry, Snapshot, TokenEntry, WorkloadEntry

ALLOW = "allow"
DENY = "deny"

# Every reason code the endpoint can answer, with its message.
REASONS = {
    "allowed": "The tool is granted and the session is within its limits.",
    "token_not_bound": "This token may not ask for this workload.",
    "workload_unknown": "No such workload.",
    "workload_unclassified": "The workload has not been classified.",
    "workload_not_active": "The workload is not active.",
    "tool_unknown": "No such tool.",
    "tool_not_granted": "The workload holds no grant of this tool.",
    "grant_not_yet_valid": "The grant is not valid yet.",
    "grant_expired": "The grant has expired.",
    "session_approval_required": (
        "The workload's sessions need approval (a containment), and this session has none."
    ),
    "session_required": (
        "The workload's session limits are narrowed (a containment): each call must name "
        "its session."
    ),
    "session_expired": "The session's inference window is over.",
    "session_idle": "The session was idle for longer than its timeout.",
    "tool_call_budget_exhausted": "The session has used all its tool calls.",
    "combination_forbidden": "The tool would complete a forbidden combination in this session.",
    "combination_needs_exception": (
        "The tool would complete a combination that needs an approved exception."
    ),
}

_REASON_OBJECTS = {code: {"code": code, "message": message} for code, message in REASONS.items()}
_REASON_JSON = {code: msgspec.json.encode([obj]).decode() for code, obj in _REASON_OBJECTS.items()}


def reasons_json(verdict: Verdict) -> str:
    """The verdict's reasons as JSON for the log; the common reasons are encoded once."""
    first = verdict.reasons[0]
    if len(verdict.reasons) == 1 and first is _REASON_OBJECTS.get(first["code"]):
        return _REASON_JSON[first["code"]]
    return msgspec.json.encode(verdict.reasons).decode()


def reason(code: str, detail: str = "") -> dict:
    if not detail:
        return _REASON_OBJECTS[code]
    return {"code": code, "message": f"{REASONS[code]} {detail}"}


@dataclass(slots=True)
class Verdict:
    decision: str
    reasons: list[dict]
    obligations: dict

    @property
    def code(self) -> str:
        return self.reasons[0]["code"]


@dataclass(slots=True)
class SessionPlan:
    """What the state store checks and records for one session call."""

    workload: str
    session: str
    max_session_seconds: float
    idle_timeout_seconds: float
    max_tool_calls: int
    labels: tuple[str, ...]
    rules: tuple[RuleEntry, ...]
    log_level: str
    # Epoch seconds the session's state must outlive: an approved session of a gated
    # workload keeps it until its approval ends, so its id cannot start a second run.
    keep_until: float = 0.0


def _deny(code: str, log_level: str = "metadata", detail: str = "") -> Verdict:
    return Verdict(
        DENY,
        [reason(code, detail)],
        {"session_seconds_left": None, "tool_calls_left": None, "log_level": log_level},
    )


def _limits(entry: WorkloadEntry, now: float) -> tuple[float, int]:
    """Session window and call budget in force: the policy's, raised by valid extensions."""
    seconds, calls = entry.max_session_seconds, entry.max_tool_calls
    for valid_from, valid_until, ext_seconds, ext_calls in entry.extensions:
        if valid_from <= now < valid_until:
            if ext_seconds is not None and ext_seconds > seconds:
                seconds = ext_seconds
            if ext_calls is not None and ext_calls > calls:
                calls = ext_calls
    return seconds, calls


def _excepted(entry: WorkloadEntry, rule: RuleEntry, now: float) -> bool:
    if rule.effect != "exception_required":
        return False
    return any(start <= now < end for start, end in entry.exceptions.get(rule.slug, ()))


def static_verdict(
    snapshot: Snapshot,
    token: TokenEntry | None,
    workload: str,
    tool: str,
    session: str | None,
    now: float,
) -> Verdict | SessionPlan:
    """A final verdict, or the plan for the session check when everything static allows."""
    if token is not None and not token.may_act_for(workload):
        return _deny("token_not_bound")
    hit = snapshot.grant_index.get((workload, tool))
    if hit is None:
        return _static_deny(snapshot, workload, tool)
    valid_from, valid_until, entry = hit
    if now < valid_from:
        return _deny("grant_not_yet_valid", entry.log_level)
    if now >= valid_until:
        return _deny("grant_expired", entry.log_level)
    keep_until = 0.0
    if entry.sessions_need_approval:
        keep_until = entry.session_approved_until(session, now)
        if not keep_until:
            detail = (
                f"Its owner files a session-run request for session {session}."
                if session
                else "Name the session."
            )
            return _deny("session_approval_required", entry.log_level, detail)
    if not session:
        if entry.sessions_required:
            return _deny("session_required", entry.log_level)
        return Verdict(
            ALLOW,
            [_REASON_OBJECTS["allowed"]],
            {"session_seconds_left": None, "tool_calls_left": None, "log_level": entry.log_level},
        )
    seconds, calls = _limits(entry, now)
    tool_entry = snapshot.tools[tool]
    rules = tuple(
        rule for rule in snapshot.rules_by_tool.get(tool, ()) if not _excepted(entry, rule, now)
    )
    return SessionPlan(
        workload=workload,
        session=session,
        max_session_seconds=seconds,
        idle_timeout_seconds=entry.idle_timeout_seconds,
        max_tool_calls=calls,
        labels=tool_entry[1],
        rules=rules,
        log_level=entry.log_level,
        keep_until=keep_until,
    )


def combination_code(effect: str) -> str:
    return "combination_forbidden" if effect == "forbid" else "combination_needs_exception"


def _static_deny(snapshot: Snapshot, workload: str, tool: str) -> Verdict:
    """Why a (workload, tool) pair has no usable grant."""
    entry = snapshot.workloads.get(workload)
    if entry is None:
        return _deny("workload_unknown")
    if not entry.classified:
        return _deny("workload_unclassified")
    if entry.status != "active":
        return _deny("workload_not_active", entry.log_level, f"It is {entry.status}.")
    if tool not in snapshot.tools:
        return _deny("tool_unknown", entry.log_level)
    return _deny("tool_not_granted", entry.log_level)


def _tripped(rule: RuleEntry, labels) -> bool:
    return all(group & labels for group in rule.groups)


@dataclass(slots=True)
class SessionState:
    started_at: float
    last_at: float
    calls: int
    labels: set[str]


def session_outcome(
    code: str, plan: SessionPlan, started_at: float, calls: int, now: float, detail: str = ""
) -> Verdict:
    """The verdict for a state store's answer, with the session's remaining budget."""
    obligations = {
        "session_seconds_left": max(0, round(plan.max_session_seconds - (now - started_at))),
        "tool_calls_left": max(0, plan.max_tool_calls - calls),
        "log_level": plan.log_level,
    }
    return Verdict(ALLOW if code == "allowed" else DENY, [reason(code, detail)], obligations)


def session_verdict(
    state: SessionState | None, plan: SessionPlan, now: float
) -> tuple[str, str, SessionState]:
    """(reason code, detail, state after). The state changes only when the call is allowed."""
    if state is None:
        state = SessionState(started_at=now, last_at=now, calls=0, labels=set())
        fresh = True
    else:
        fresh = False
    if now - state.started_at >= plan.max_session_seconds:
        return "session_expired", "", state
    if not fresh and now - state.last_at >= plan.idle_timeout_seconds:
        return "session_idle", "", state
    if state.calls >= plan.max_tool_calls:
        return "tool_call_budget_exhausted", "", state
    combined = state.labels | set(plan.labels)
    for rule in plan.rules:
        if _tripped(rule, combined) and not _tripped(rule, state.labels):
            code = (
                "combination_forbidden"
                if rule.effect == "forbid"
                else "combination_needs_exception"
            )
            return code, f"Rule: {rule.slug}.", state
    after = SessionState(
        started_at=state.started_at, last_at=now, calls=state.calls + 1, labels=combined
    )
    return "allowed", "", after
