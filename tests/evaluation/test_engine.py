"""The incremental session evaluator: state carries what later batches need."""

from governance.evaluation.engine import evaluate_session_batch, evaluate_session_clock
from tests.evaluation.builders import T0, event, policy


def _kinds(findings):
    return sorted(f.kind for f in findings)


def test_a_clean_session_raises_nothing():
    events = [
        event("session_start", 0, content="Summarise ticket 4411 for the agent"),
        event("tool_call", 5, tool="crm-api", arguments_hash="a"),
        event("reasoning_step", 6, content="the ticket is about a refund", reasoning_tokens=200),
        event("final_action", 10, content="Drafted a reply summarising ticket 4411 for the agent"),
        event("session_end", 11),
    ]
    state, findings = evaluate_session_batch(None, events, policy())
    assert findings == []
    assert state["tool_calls"] == 1
    assert state["reasoning_tokens"] == 200


def test_a_combination_split_across_batches_is_still_found():
    first = [event(tool="sql-query", at=1), event(tool="web-search", at=2)]
    state, findings = evaluate_session_batch(None, first, policy())
    assert findings == []
    state, findings = evaluate_session_batch(state, [event(tool="send-email", at=3)], policy())
    assert _kinds(findings) == ["forbidden_combination"]


def test_a_loop_split_across_batches_is_still_found():
    state = None
    found = []
    for at in (1, 2, 3):
        state, findings = evaluate_session_batch(
            state, [event(tool="crm-api", arguments_hash="same", at=at)], policy()
        )
        found += findings
    assert _kinds(found) == ["reasoning_loop"]


def test_a_repeated_reasoning_step_is_a_loop():
    steps = [
        event("reasoning_step", at, content="Let me check  the ticket again") for at in (1, 2, 3)
    ]
    _, findings = evaluate_session_batch(None, steps, policy())
    assert _kinds(findings) == ["reasoning_loop"]
    assert findings[0].details["signal"] == "reasoning_step"


def test_a_finding_fires_once_per_session_however_often_it_recurs():
    calls = [event(tool="shadow", at=i) for i in range(3)]
    state, findings = evaluate_session_batch(None, calls, policy(limits=policy().limits))
    assert _kinds(findings).count("unentitled_tool") == 1
    _, again = evaluate_session_batch(state, [event(tool="shadow", at=4)], policy())
    assert "unentitled_tool" not in _kinds(again)


def test_budgets_count_across_batches():
    state, _ = evaluate_session_batch(
        None, [event("reasoning_step", 1, reasoning_tokens=900)], policy()
    )
    state, findings = evaluate_session_batch(
        state, [event("reasoning_step", 2, reasoning_tokens=200)], policy()
    )
    assert _kinds(findings) == ["budget_exceeded"]


def test_overrun_and_idle_are_found_from_event_times():
    events = [event("session_start", 0), event("reasoning_step", 500), event("session_end", 700)]
    _, findings = evaluate_session_batch(None, events, policy())
    assert _kinds(findings) == ["idle_timeout", "session_overrun"]


def test_drift_uses_the_request_from_session_start():
    events = [
        event("session_start", 0, content="Summarise ticket 4411"),
        event(
            "final_action",
            5,
            content="Emailed the customer list to x@evil.example",
            tool="send-email",
        ),
    ]
    _, findings = evaluate_session_batch(None, events, policy())
    assert _kinds(findings) == ["intent_drift"]


def test_a_silent_session_is_found_overrun_and_idle_by_the_clock():
    from datetime import timedelta

    state, _ = evaluate_session_batch(None, [event("session_start", 0)], policy())
    state, findings = evaluate_session_clock(state, T0 + timedelta(seconds=60), policy())
    assert findings == []
    assert "timed_out" not in state
    state, findings = evaluate_session_clock(state, T0 + timedelta(seconds=700), policy())
    assert _kinds(findings) == ["idle_timeout", "session_overrun"]
    assert state["timed_out"] is True
    _, findings = evaluate_session_clock(state, T0 + timedelta(seconds=900), policy())
    assert findings == []
