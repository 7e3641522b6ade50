"""Each detector with a case that fires and one that must not."""

from dataclasses import replace
from datetime import timedelta

import pytest

from governance.evaluation.detectors import (
    EventData,
    Limits,
    check_budgets,
    check_drift,
    check_idle_gap,
    check_loop,
    check_overrun,
    check_session_combination,
    check_session_gate,
    check_tool_access,
    check_workload_status,
    drift,
)
from governance.evaluation.detectors.drift import capabilities_named, targets_in
from governance.evaluation.detectors.severity import severity_for
from governance.evaluation.scoring import TfCosineScorer, TokenSetScorer
from tests.evaluation.builders import T0, event, exception, grant, policy


def test_a_granted_tool_call_raises_nothing():
    assert check_tool_access(event(tool="crm-api"), policy()) is None


def test_a_tool_without_any_grant_is_unentitled():
    draft = check_tool_access(event(tool="crm-api"), policy(grants=(grant("file-read"),)))
    assert draft.kind == "unentitled_tool"
    assert draft.tool == "crm-api"
    assert draft.details["in_catalogue"] is True


def test_a_tool_unknown_to_the_catalogue_is_unentitled():
    draft = check_tool_access(event(tool="shadow-tool"), policy())
    assert draft.kind == "unentitled_tool"
    assert draft.details["in_catalogue"] is False


def test_a_call_after_the_grant_expired_is_expired_grant_use():
    draft = check_tool_access(
        event(tool="crm-api", at=100), policy(grants=(grant("crm-api", end=50),))
    )
    assert draft.kind == "expired_grant_use"
    assert draft.details["grant_status"] == "expired"


def test_a_call_after_a_revocation_is_flagged_but_one_before_it_is_not():
    revoked = policy(grants=(grant("crm-api", status="revoked", end=50),))
    assert check_tool_access(event(tool="crm-api", at=10), revoked) is None
    draft = check_tool_access(event(tool="crm-api", at=60), revoked)
    assert draft.kind == "expired_grant_use"
    assert draft.details["grant_status"] == "revoked"


def test_a_call_before_the_grant_starts_is_unentitled():
    draft = check_tool_access(
        event(tool="crm-api", at=0), policy(grants=(grant("crm-api", start=60),))
    )
    assert draft.kind == "unentitled_tool"


def test_non_tool_events_are_not_access_checked():
    assert check_tool_access(event("reasoning_step", content="think"), policy(grants=())) is None


def test_an_active_workload_raises_no_status_finding():
    assert check_workload_status(event(), policy()) is None


def test_a_suspended_workload_reporting_activity_is_flagged():
    draft = check_workload_status(event(), policy(workload_status="suspended"))
    assert draft.kind == "suspended_workload_use"


def test_a_draft_workload_reporting_activity_is_flagged_as_unclassified():
    draft = check_workload_status(event(), policy(workload_status="draft", tier_position=""))
    assert draft.kind == "unclassified_workload_use"


def test_the_call_completing_the_trifecta_in_a_session_is_flagged():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    drafts = check_session_combination(used, event(tool="send-email"), policy())
    assert [d.kind for d in drafts] == ["forbidden_combination"]
    assert drafts[0].details["rule"] == "lethal-trifecta"


def test_two_of_three_trifecta_legs_are_not_a_combination():
    drafts = check_session_combination(
        {"sql-query": "data_store"}, event(tool="web-search"), policy()
    )
    assert drafts == []


def test_a_valid_rule_exception_allows_the_combination():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    allowed = policy(exceptions=(exception("lethal-trifecta"),))
    assert check_session_combination(used, event(tool="send-email"), allowed) == []


def test_an_expired_rule_exception_does_not_allow_it():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    lapsed = policy(exceptions=(exception("lethal-trifecta", start=-600, end=-60),))
    assert len(check_session_combination(used, event(tool="send-email"), lapsed)) == 1


def test_an_exception_that_expired_since_still_covers_calls_made_while_it_ran():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    since_expired = policy(exceptions=(exception("lethal-trifecta", status="expired"),))
    assert check_session_combination(used, event(tool="send-email"), since_expired) == []


def test_a_revoked_exception_covers_only_calls_before_its_revocation():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    revoked = policy(exceptions=(exception("lethal-trifecta", status="revoked", revoked=30),))
    assert check_session_combination(used, event(tool="send-email", at=10), revoked) == []
    after = check_session_combination(used, event(tool="send-email", at=30), revoked)
    assert [d.kind for d in after] == ["forbidden_combination"]
    never_dated = policy(exceptions=(exception("lethal-trifecta", status="revoked"),))
    assert len(check_session_combination(used, event(tool="send-email"), never_dated)) == 1


def test_a_forbid_rule_is_critical_and_ignores_exceptions():
    from tests.evaluation.builders import TRIFECTA

    forbid = replace(TRIFECTA, effect="forbid")
    used = {"sql-query": "data_store", "web-search": "web_access"}
    drafts = check_session_combination(
        used,
        event(tool="send-email"),
        policy(rules=(forbid,), exceptions=(exception(forbid.slug),)),
    )
    assert drafts[0].severity == "critical"


def test_a_session_inside_its_window_has_not_overrun():
    assert check_overrun(T0, event(at=600).occurred_at, policy()) is None


def test_a_session_past_its_window_has_overrun():
    draft = check_overrun(T0, event(at=601).occurred_at, policy())
    assert draft.kind == "session_overrun"
    assert draft.details["limit_seconds"] == 600


def test_a_gap_within_the_idle_timeout_is_fine():
    assert check_idle_gap(T0, event(at=120).occurred_at, policy()) is None


def test_a_gap_past_the_idle_timeout_is_flagged():
    assert check_idle_gap(T0, event(at=121).occurred_at, policy()).kind == "idle_timeout"


def test_budgets_within_limits_raise_nothing():
    assert check_budgets(10, 1000, policy(), 1, T0) == []


def test_each_crossed_budget_is_flagged_separately():
    drafts = check_budgets(11, 1001, policy(), 1, T0)
    assert {d.details["budget"] for d in drafts} == {"tool_calls", "reasoning_tokens"}


def test_a_repeat_below_the_loop_threshold_is_not_a_loop():
    window = [["crm-api:abc", 1]]
    window, draft = check_loop(window, "crm-api:abc", 2, T0, policy(), what="tool_call")
    assert draft is None
    assert len(window) == 2


def test_the_same_call_repeated_to_the_threshold_is_a_loop():
    window = [["crm-api:abc", 1], ["crm-api:xyz", 2], ["crm-api:abc", 3]]
    window, draft = check_loop(window, "crm-api:abc", 4, T0, policy(), what="tool_call")
    assert draft.kind == "reasoning_loop"
    assert draft.evidence == (1, 3, 4)


def test_repeats_that_fell_out_of_the_window_do_not_count():
    narrow = policy(loop_window=3)
    window = [["a", 1], ["a", 2], ["b", 3]]
    window, draft = check_loop(window, "a", 4, T0, narrow, what="tool_call")
    assert draft is None
    assert window == [["a", 2], ["b", 3], ["a", 4]]


def _drift(action, request="Summarise ticket 4411 for the agent", capability="", **kw):
    return check_drift(
        request=request,
        purpose=policy().purpose,
        action=action,
        action_capability=capability,
        policy=kw.pop("snapshot", policy()),
        event_id=9,
        moment=T0,
        **kw,
    )


def test_an_action_that_answers_the_request_is_not_drift():
    assert _drift("Drafted a reply summarising ticket 4411 for the support agent.") is None


def test_an_action_in_a_capability_the_request_never_asked_for_is_drift():
    draft = _drift("Summarised ticket 4411 for the agent", capability="code_execution")
    assert "capability" in draft.details["signals"]
    assert draft.details["capabilities_outside_request"] == ["code_execution"]


def test_an_action_aimed_at_a_target_nobody_mentioned_is_drift():
    draft = _drift("Summarised ticket 4411 and forwarded it to exfil@attacker.example")
    assert "targets" in draft.details["signals"]
    assert draft.details["targets_outside_request"] == ["exfil@attacker.example"]


def test_an_unrelated_action_scores_low_similarity():
    draft = _drift("Rebalanced the kubernetes cluster nodes")
    assert "similarity" in draft.details["signals"]
    assert draft.details["similarity"] < 0.1


def test_addresses_are_found_inside_words_and_beside_punctuation():
    text = "Mailed it (to:Ops.Team+drift@corp.example.co.uk), then saw https://Evil.example/x"
    assert targets_in(text) == {"ops.team+drift@corp.example.co.uk", "evil.example"}


def test_the_address_pattern_only_reads_pieces_holding_an_at_sign(monkeypatch):
    """Event text is the client's: the unbounded pattern backtracked quadratically over a long
    run of name characters (40 KB of letters took it 5 s). A run without an "@" is never
    scanned, and one with an "@" is scanned only from where an address can start."""
    seen = []
    pattern = drift._EMAIL

    class Spy:
        def findall(self, text):
            seen.append(text)
            return pattern.findall(text)

    monkeypatch.setattr(drift, "_EMAIL", Spy())
    hostile = "a" * 50_000 + " reach me@corp.example"
    assert drift.emails_in(hostile) == {"me@corp.example"}
    assert seen == ["me@corp.example"]
    assert pattern.findall("b" * 400 + "@x.example") == ["b" * 400 + "@x.example"]


def test_addresses_in_compact_json_and_paths_are_all_found():
    recipients = [f"user{n}@corp{n}.example" for n in range(14)]
    compact = '{"to":[' + ",".join(f'"{r}"' for r in recipients) + "]}"
    assert len(compact) > 320 and " " not in compact
    assert targets_in(compact) == set(recipients)
    assert targets_in("attacker@evil.example/" + "x" * 330) == {"attacker@evil.example"}
    smuggled = "a" * 70 + "@evil.example"  # an overlong local part carrying data out
    assert targets_in(f"sent it to {smuggled}") == {smuggled}


def test_the_drift_scorer_is_pluggable():
    class AlwaysSimilar:
        def score(self, a, b):
            return 1.0

    assert _drift("Rebalanced the kubernetes cluster nodes", scorer=AlwaysSimilar()) is None


def test_scorers_rate_identical_texts_one_and_disjoint_zero():
    for scorer in (TfCosineScorer(), TokenSetScorer()):
        assert scorer.score("refund the order", "refund the order") > 0.99
        assert scorer.score("refund the order", "kubernetes cluster") == 0.0


def test_severity_rises_in_the_top_tier_and_falls_in_the_bottom():
    assert severity_for("unentitled_tool", "middle") == "high"
    assert severity_for("unentitled_tool", "top") == "critical"
    assert severity_for("idle_timeout", "bottom") == "low"


def test_limits_left_unset_disable_their_checks():
    unlimited = policy(limits=Limits())
    assert check_overrun(T0, event(at=10**6).occurred_at, unlimited) is None
    assert check_budgets(10**6, 10**9, unlimited, 1, T0) == []


@pytest.mark.parametrize(
    ("text", "capability"),
    [
        ("Emailed the summary to the whole team", "messaging"),
        ("Searching the web for the customer's address", "web_access"),
        ("Deleted the old attachments", "file_write"),
        ("Replies were forwarded", "messaging"),
        ("Ran the scripts", "code_execution"),
        ("Running a shell command", "code_execution"),
        ("Queried the warehouse tables", "data_store"),
        ("Sent it to Bob", "messaging"),
        ("Wrote it to disk", "file_write"),
        ("Overwritten yesterday", "file_write"),
        ("Ran it twice", "code_execution"),
    ],
)
def test_capability_words_count_in_any_inflection(text, capability):
    assert capability in capabilities_named(text)


def test_stemming_does_not_invent_capabilities():
    assert capabilities_named("Summarised the story of the refund for the agent") == set()


def test_an_inflected_action_word_outside_the_request_is_drift():
    # "deleted" was not one of the listed words, so this signal missed it.
    draft = _drift("Summarised ticket 4411 for the agent and deleted it")
    assert draft.details["capabilities_outside_request"] == ["file_write"]


def _reported(at: float, received: float, **fields) -> EventData:
    """A call said to happen `at` s after T0, received `received` s after T0."""
    return event(tool="crm-api", at=at, received_at=T0 + timedelta(seconds=received), **fields)


def test_a_call_backdated_to_before_a_revocation_is_judged_when_it_could_have_happened():
    revoked = policy(grants=(grant("crm-api", status="revoked", end=50),))
    # Reported a few seconds late: judged at the time it claims, before the revocation.
    assert check_tool_access(_reported(at=10, received=15), revoked) is None
    # Reported an hour after the revocation yet claiming a time before it: judged no earlier
    # than the allowed lateness (15 minutes) before it arrived.
    draft = check_tool_access(_reported(at=10, received=50 + 3600), revoked)
    assert draft.kind == "expired_grant_use"
    assert draft.details["reported_late_seconds"] == 3640
    assert draft.occurred_at == T0 + timedelta(seconds=10)  # the finding keeps its claim
    lenient = policy(grants=revoked.grants, max_lateness=timedelta(hours=2))
    assert check_tool_access(_reported(at=10, received=50 + 3600), lenient) is None


def test_a_call_backdated_to_before_the_session_gate_is_flagged():
    gated = policy(session_gates=((T0 + timedelta(seconds=100), None),))
    on_time = _reported(at=10, received=12)
    assert check_session_gate(on_time, gated, (), "run-1") is None
    backdated = _reported(at=10, received=100 + 1800)
    draft = check_session_gate(backdated, gated, (), "run-1")
    assert draft.kind == "unapproved_session_use"
    assert draft.details["reported_late_seconds"] == 1890


def test_an_exception_does_not_cover_a_call_backdated_into_its_window():
    used = {"sql-query": "data_store", "web-search": "web_access"}
    lapsed = policy(exceptions=(exception("lethal-trifecta", start=-600, end=-60),))
    inside = event(tool="send-email", at=-120, received_at=T0 + timedelta(seconds=-100))
    assert check_session_combination(used, inside, lapsed) == []
    backdated = event(tool="send-email", at=-120, received_at=T0 + timedelta(hours=1))
    assert len(check_session_combination(used, backdated, lapsed)) == 1


def test_a_call_dated_after_it_arrived_is_judged_at_its_arrival():
    """A reporter whose clock runs ahead dates calls into a gate set just after they
    arrived; judged at their claimed time, a re-evaluation flagged calls made before it."""
    gated = policy(session_gates=((T0 + timedelta(seconds=100), None),))
    ahead = _reported(at=110, received=95)
    assert check_session_gate(ahead, gated, (), "run-1") is None
    # Arrived after the gate was set: flagged, whatever it claims.
    assert check_session_gate(_reported(at=110, received=105), gated, (), "run-1") is not None
    revoked = policy(grants=(grant("crm-api", status="revoked", end=50),))
    draft = check_tool_access(_reported(at=60, received=40), revoked)
    assert draft is None


def test_a_long_call_reported_when_it_ended_is_judged_when_it_started():
    """An OpenTelemetry span is exported when it ends: a 40-minute tool call that started
    under a grant revoked 25 minutes ago is not a late report."""
    revoked = policy(
        grants=(grant("crm-api", status="revoked", end=15 * 60),),
        limits=Limits(max_session_seconds=3600),
    )
    long_call = _reported(at=0, received=40 * 60 + 5, duration_ms=40 * 60 * 1000)
    assert check_tool_access(long_call, revoked) is None
    # Its length cannot stretch a backdate past the session window (the policy's limit).
    claimed = _reported(at=0, received=3 * 3600, duration_ms=3 * 3600 * 1000)
    window = policy(grants=revoked.grants, limits=Limits(max_session_seconds=1800))
    draft = check_tool_access(claimed, window)
    assert draft.kind == "expired_grant_use"
    assert draft.details["reported_late_seconds"] == 3 * 3600 - 1800


def test_activity_is_judged_by_the_status_the_workload_had_then():
    """Suspended at T0+100 s: a call before it was made by an active workload."""
    suspended = policy(
        workload_status="suspended",
        status_changes=(
            (T0 - timedelta(days=1), "active"),
            (T0 + timedelta(seconds=100), "suspended"),
        ),
    )
    assert check_workload_status(_reported(at=50, received=51), suspended) is None
    draft = check_workload_status(_reported(at=150, received=151), suspended)
    assert draft.kind == "suspended_workload_use"
    # A call dated before the suspension but reported an hour after it is judged later.
    late = check_workload_status(_reported(at=50, received=100 + 3600), suspended)
    assert late.kind == "suspended_workload_use"
    # With no history, the current status holds throughout, as before.
    assert check_workload_status(_reported(at=50, received=51), policy(workload_status="suspended"))
