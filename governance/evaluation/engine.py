"""Incremental evaluation of one session: previous state + new events → new state + findings.

Pure: plain data in, plain data out. The state is JSON (kept in Session.evaluation_state), so
a run reads one row per session, never the session's history. Events may arrive late and out of
order across batches; counters are order-free, the gap and window checks use what is known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from governance.evaluation.detectors import (
    EventData,
    FindingDraft,
    PolicySnapshot,
    check_budgets,
    check_drift,
    check_idle_gap,
    check_loop,
    check_overrun,
    check_session_combination,
    check_session_gate,
    check_tool_access,
    check_workload_status,
    limits_at,
    policy_moment,
)
from governance.evaluation.scoring import SimilarityScorer

STATE_VERSION = 1
REQUEST_CHARS = 4000


def empty_state() -> dict:
    return {
        "v": STATE_VERSION,
        "started_at": None,
        "last_at": None,
        "tool_calls": 0,
        "reasoning_tokens": 0,
        "tools": {},
        "calls": [],
        "thoughts": [],
        "request": "",
        "fired": [],
        # The latest moment an event of the session was judged at, while its workload's
        # limits changed over time: the totals are judged by the limits then.
        "limits_at": None,
    }


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def reasoning_signature(text: str) -> str:
    normalised = " ".join(text.lower().split())
    return hashlib.sha256(normalised.encode()).hexdigest()


def evaluate_session_batch(
    state: dict | None,
    events: Iterable[EventData],
    policy: PolicySnapshot,
    *,
    request: str = "",
    started_at: datetime | None = None,
    scorer: SimilarityScorer | None = None,
    session: str = "",
    approvals: tuple[tuple[datetime, datetime], ...] = (),
) -> tuple[dict, list[FindingDraft]]:
    """Apply new events of one session to its state; return the new state and new findings.

    A finding key fires at most once per session (the state remembers it); the database's
    unique dedupe key backs this up across redelivered runs. `session` (the service's id) and
    its `approvals` matter only while the workload's sessions needed approval.
    """
    state = {**empty_state(), **(state or {})}
    fired = set(state["fired"])
    tools_used: dict[str, str] = dict(state["tools"])
    calls, thoughts = list(state["calls"]), list(state["thoughts"])
    if request and not state["request"]:
        state["request"] = request[:REQUEST_CHARS]
    start = _when(state["started_at"]) or started_at
    last = _when(state["last_at"])
    latest = _when(state["limits_at"])
    findings: list[FindingDraft] = []

    def emit(draft: FindingDraft | None) -> None:
        if draft is not None and draft.key not in fired:
            fired.add(draft.key)
            findings.append(draft)

    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        if start is None or event.occurred_at < start or not state.get("first_id"):
            start = min(start or event.occurred_at, event.occurred_at)
            state["first_id"] = event.id
        if event.type == "session_start" and event.content and not state["request"]:
            state["request"] = event.content[:REQUEST_CHARS]

        emit(check_workload_status(event, policy))
        # The limits an event is judged by are those at its policy moment (a backdated event
        # cannot pick an old, wider window); the session's totals, which count events in
        # whatever order they arrive, by those at the latest moment seen, so a live run and a
        # re-run agree.
        limits = totals_limits = policy.limits
        if policy.limit_changes:
            moment = policy_moment(event, policy)
            limits = limits_at(policy, moment)
            latest = moment if latest is None or moment > latest else latest
            totals_limits = limits_at(policy, latest)
        if last is not None and event.occurred_at > last:
            emit(check_idle_gap(last, event.occurred_at, policy, (event.id,), limits))
        if last is None or event.occurred_at >= last:
            last = event.occurred_at
            state["last_id"] = event.id
        emit(check_overrun(start, event.occurred_at, policy, (event.id,), limits))

        state["reasoning_tokens"] += event.reasoning_tokens
        if event.type == "tool_call" and event.tool:
            state["tool_calls"] += 1
            emit(check_tool_access(event, policy))
            if policy.session_gates:
                emit(check_session_gate(event, policy, approvals, session))
            for combination in check_session_combination(tools_used, event, policy):
                emit(combination)
            tools_used.setdefault(event.tool, policy.tools.get(event.tool, ""))
            signature = f"{event.tool}:{event.arguments_hash}"
            calls, draft = check_loop(
                calls,
                signature,
                event.id,
                event.occurred_at,
                policy,
                what="tool_call",
                tool=event.tool,
                limits=limits,
            )
            emit(draft)
        elif event.type == "reasoning_step" and event.content.strip():
            thoughts, draft = check_loop(
                thoughts,
                reasoning_signature(event.content),
                event.id,
                event.occurred_at,
                policy,
                what="reasoning_step",
                limits=limits,
            )
            emit(draft)
        elif event.type == "final_action":
            emit(
                check_drift(
                    request=state["request"],
                    purpose=policy.purpose,
                    action=event.content,
                    action_capability=policy.tools.get(event.tool, ""),
                    policy=policy,
                    event_id=event.id,
                    moment=event.occurred_at,
                    scorer=scorer,
                    tool=event.tool,
                )
            )
        for draft in check_budgets(
            state["tool_calls"],
            state["reasoning_tokens"],
            policy,
            event.id,
            event.occurred_at,
            totals_limits,
        ):
            emit(draft)

    state.update(
        started_at=start.isoformat() if start else None,
        last_at=last.isoformat() if last else None,
        limits_at=latest.isoformat() if latest else None,
        tools=tools_used,
        calls=calls,
        thoughts=thoughts,
        fired=sorted(fired),
    )
    state.pop("timed_out", None)
    return state, findings


def evaluate_session_clock(
    state: dict | None,
    now: datetime,
    policy: PolicySnapshot,
    *,
    started_at: datetime | None = None,
    last_event_at: datetime | None = None,
) -> tuple[dict, list[FindingDraft]]:
    """For a session that never sent an end: has it overrun its window, or gone idle, by now?

    Sets `timed_out` once the idle timeout has passed, so the periodic scan can skip it.
    """
    state = {**empty_state(), **(state or {})}
    fired = set(state["fired"])
    start = _when(state["started_at"]) or started_at
    last = _when(state["last_at"]) or last_event_at
    findings = []
    evidence = tuple(i for i in (state.get("first_id"), state.get("last_id")) if i)
    for draft in (
        check_overrun(start, now, policy, evidence),
        check_idle_gap(last, now, policy, evidence[-1:]),
    ):
        if draft is not None and draft.key not in fired:
            fired.add(draft.key)
            findings.append(draft)
    idle_limit = limits_at(policy, now).idle_timeout_seconds
    if last is not None and idle_limit is not None and (now - last).total_seconds() > idle_limit:
        state["timed_out"] = True
    state["fired"] = sorted(fired)
    return state, findings
