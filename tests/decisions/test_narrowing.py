"""Containment's fourth measure: a finding narrows its workload's session limits.

The caps live on the containment record and hold over the session policy, the tier defaults
and any longer window, in decisions and in evaluation alike, until an IAM admin reverses the
record; another narrowing's caps stand."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.approvals import services as approvals
from governance.errors import Conflict, DomainError
from governance.evaluation.detectors import limits_at
from governance.evaluation.services import events_evaluate
from governance.evaluation.snapshot import policy_snapshots
from governance.findings import narrowing, services
from governance.models import AccessRequest, AuditEvent, ContainmentAction, Finding, PolicyState
from tests.decisions.conftest import ask
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import SessionExtension, Tool, Workload
from workloads.selectors import effective_session_limits
from workloads.services import workload_set_status

pytestmark = pytest.mark.django_db
NARROW = ContainmentAction.Action.NARROW_SESSIONS


@pytest.fixture
def workload(owner):
    """internal-act: 1,800 s window, 300 s idle, 100 calls, 100,000 tokens, loop threshold 3."""
    workload = ClassifiedWorkloadFactory(owner=owner, slug="triage")
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="web-search"))
    return workload


def _finding(workload, kind="budget_exceeded", key="narrow"):
    return Finding.objects.create(
        kind=kind,
        severity="medium",
        workload=workload,
        session=make_session(workload),
        summary="Went over its tool-call budget.",
        dedupe_key=key,
        occurred_at=timezone.now(),
    )


def _narrow(workload, by, key="narrow", **caps):
    return services.containment_apply(
        finding=_finding(workload, key=key), action=NARROW, by=by, reason="Runaway", limits=caps
    )


def _ask_for_a_longer_window(owner, workload):
    """The owner files a session-window request for 900 tool calls."""
    return approvals.access_request_create(
        by=owner,
        workload=workload,
        kind=AccessRequest.Kind.SESSION_WINDOW,
        session_limits={"max_tool_calls": 900},
        justification="A longer run",
    )


def _in_force(workload):
    workload.refresh_from_db()
    return effective_session_limits(workload=workload, at=timezone.now())


def test_narrowing_records_its_caps_audits_them_and_moves_the_policy(workload, reviewer):
    version = PolicyState.objects.get(id=1).version
    action = _narrow(workload, reviewer, max_tool_calls=2, loop_threshold=2)
    assert action.limits == {"max_tool_calls": 2, "loop_threshold": 2}
    assert PolicyState.objects.get(id=1).version > version
    narrowed = AuditEvent.objects.get(action="workload.sessions_narrowed")
    assert narrowed.actor == reviewer
    assert narrowed.before == {"max_tool_calls": 100, "loop_threshold": 3}
    assert narrowed.after["max_tool_calls"] == 2 and "Runaway" in narrowed.after["reason"]
    applied = AuditEvent.objects.get(action="containment.apply")
    assert applied.after["limits"] == {"max_tool_calls": 2, "loop_threshold": 2}
    in_force = _in_force(workload)
    assert (in_force["max_tool_calls"], in_force["loop_threshold"]) == (2, 2)
    assert in_force["max_session_seconds"] == 1800  # a limit not named is left alone
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE  # lighter than a suspension


@pytest.mark.parametrize(
    ("caps", "field", "code"),
    [
        ({}, "limits", "required"),
        ({"max_tool_calls": None}, "limits", "required"),
        ({"max_tool_calls": 100}, "max_tool_calls", "not_lower"),
        ({"max_tool_calls": 150}, "max_tool_calls", "not_lower"),
        ({"max_tool_calls": 0}, "max_tool_calls", "invalid"),
        ({"loop_threshold": 1}, "loop_threshold", "invalid"),
        ({"max_reasoning_tokens": 2**31}, "max_reasoning_tokens", "invalid"),
        ({"max_tool_calls": 10**40}, "max_tool_calls", "invalid"),
        ({"max_tool_calls": "5"}, "max_tool_calls", "invalid"),
        ({"retention_days": 5}, "limits", "invalid"),
    ],
)
def test_only_lower_whole_caps_narrow(workload, reviewer, caps, field, code):
    finding = _finding(workload)
    with pytest.raises(DomainError) as refused:
        services.containment_apply(
            finding=finding, action=NARROW, by=reviewer, reason="Runaway", limits=caps
        )
    assert (refused.value.field, refused.value.code) == (field, code)
    assert not ContainmentAction.objects.exists()
    assert not AuditEvent.objects.filter(action="workload.sessions_narrowed").exists()


def test_a_second_narrowing_must_go_below_the_first(workload, reviewer):
    _narrow(workload, reviewer, max_tool_calls=10)
    with pytest.raises(DomainError) as refused:
        _narrow(workload, reviewer, key="second", max_tool_calls=20)
    assert refused.value.code == "not_lower" and "10 in force" in refused.value.message


def test_narrowing_is_refused_where_it_makes_no_sense(workload, reviewer, admin_user):
    finding = _finding(workload)
    services.containment_apply(
        finding=finding, action=NARROW, by=reviewer, reason="Runaway", limits={"max_tool_calls": 9}
    )
    with pytest.raises(Conflict):  # once per finding
        services.containment_apply(
            finding=finding,
            action=NARROW,
            by=reviewer,
            reason="Again",
            limits={"max_tool_calls": 5},
        )
    closed = _finding(workload, key="closed")
    services.finding_set_status(finding=closed, status="resolved", by=reviewer)
    with pytest.raises(Conflict):
        services.containment_apply(
            finding=closed, action=NARROW, by=reviewer, reason="Late", limits={"max_tool_calls": 5}
        )
    retired = _finding(workload, key="retired")
    workload_set_status(workload=workload, status="retired", by=admin_user, reason="Gone")
    with pytest.raises(Conflict):
        services.containment_apply(
            finding=retired, action=NARROW, by=reviewer, reason="Late", limits={"max_tool_calls": 5}
        )


def test_someone_without_the_containment_permission_cannot_narrow(workload, owner):
    with pytest.raises(DomainError) as refused:
        _narrow(workload, owner, max_tool_calls=2)
    assert refused.value.status == 403


def test_the_decision_endpoint_holds_sessions_to_the_caps(
    client, workload, reviewer, decide_secret, state
):
    _narrow(workload, reviewer, max_tool_calls=2)
    first = ask(client, decide_secret, session="run-a")
    assert first["decision"] == "allow"
    assert first["obligations"]["tool_calls_left"] == 1
    assert ask(client, decide_secret, session="run-a")["decision"] == "allow"
    third = ask(client, decide_secret, session="run-a")
    assert third["decision"] == "deny"
    assert third["reasons"][0]["code"] == "tool_call_budget_exhausted"


def test_a_longer_window_does_not_lift_a_cap(client, workload, reviewer, decide_secret, owner):
    now = timezone.now()
    SessionExtension.objects.create(
        workload=workload,
        max_tool_calls=500,
        max_session_seconds=7200,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=1),
    )
    assert _in_force(workload)["max_tool_calls"] == 500
    _narrow(workload, reviewer, max_tool_calls=1)
    in_force = _in_force(workload)
    assert in_force["max_tool_calls"] == 1
    assert in_force["max_session_seconds"] == 7200  # the window's other raise still applies
    assert ask(client, decide_secret, session="run-b")["obligations"]["tool_calls_left"] == 0
    assert ask(client, decide_secret, session="run-b")["decision"] == "deny"
    # Nor may the owner ask for a longer window on a capped limit: reversing lifts it.
    with pytest.raises(Conflict) as refused:
        _ask_for_a_longer_window(owner, workload)
    assert refused.value.code == "narrowed"
    # The workload page's access panel says the window is held below what it grants.
    client.force_login(owner)
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert "A narrowing holds it to Tool calls ≤ 1 until it is reversed." in page


def test_reversing_lifts_its_own_caps_and_keeps_anothers(
    client, workload, reviewer, admin_user, decide_secret
):
    first = _narrow(workload, reviewer, max_tool_calls=50)
    second = _narrow(workload, reviewer, key="second", max_tool_calls=1, loop_threshold=2)
    assert _in_force(workload)["max_tool_calls"] == 1
    version = PolicyState.objects.get(id=1).version
    services.containment_reverse(action=second, by=admin_user, reason="Loop fixed")
    assert PolicyState.objects.get(id=1).version > version
    in_force = _in_force(workload)
    assert (in_force["max_tool_calls"], in_force["loop_threshold"]) == (50, 3)
    widened = AuditEvent.objects.get(action="workload.sessions_widened")
    assert widened.before == {"max_tool_calls": 1, "loop_threshold": 2}
    assert "Loop fixed" in widened.after["reason"]
    assert ask(client, decide_secret, session="run-c")["obligations"]["tool_calls_left"] == 49
    services.containment_reverse(action=first, by=admin_user, reason="Budget fixed")
    assert _in_force(workload)["max_tool_calls"] == 100


def test_the_owner_cannot_reverse_a_narrowing_of_their_workload(workload, reviewer, owner):
    action = _narrow(workload, reviewer, max_tool_calls=2)
    with pytest.raises(DomainError):
        services.containment_reverse(action=action, by=owner, reason="Mine")
    assert _in_force(workload)["max_tool_calls"] == 2


def test_evaluation_judges_sessions_by_the_caps(workload, reviewer):
    _narrow(workload, reviewer, max_tool_calls=2)
    session = make_session(workload, started_at=timezone.now())
    calls = [("tool_call", s, {"tool": "web-search"}) for s in (1, 2, 3)]
    events_evaluate(**id_range(add_events(session, *calls)))
    (over,) = Finding.objects.filter(session=session, kind="budget_exceeded")
    assert over.details["limit"] == 2


def test_a_re_run_judges_each_session_by_the_caps_of_its_time(workload, reviewer, admin_user):
    """A session that kept to the limits before the narrowing is not flagged when evaluated
    after it; one after it is, and so is one while it held, once it is reversed."""

    def session_of_three_calls(started_at):
        session = make_session(workload, started_at=started_at)
        calls = [
            ("tool_call", s, {"tool": "web-search", "received_at": started_at}) for s in (1, 2, 3)
        ]
        return session, add_events(session, *calls)

    before, early = session_of_three_calls(timezone.now() - timedelta(hours=2))
    action = _narrow(workload, reviewer, max_tool_calls=2)
    during, late = session_of_three_calls(timezone.now())
    services.containment_reverse(action=action, by=admin_user, reason="Fixed the agent")
    events_evaluate(**id_range(early + late))
    over = Finding.objects.filter(kind="budget_exceeded", session__in=(before, during))
    assert [(f.session_id, f.details["limit"]) for f in over] == [(during.pk, 2)]


def test_the_proposal_halves_what_the_finding_speaks_to(workload):
    in_force = _in_force(workload)
    propose = narrowing.proposed_caps
    # A budget finding says which budget it went over; without that, both are proposed.
    over_calls = _finding(workload, "budget_exceeded", "a")
    over_calls.details = {"budget": "tool_calls", "used": 120, "limit": 100}
    assert propose(over_calls, in_force) == {"max_tool_calls": 50}
    over_tokens = _finding(workload, "budget_exceeded", "a2")
    over_tokens.details = {"budget": "reasoning_tokens"}
    assert propose(over_tokens, in_force) == {"max_reasoning_tokens": 50_000}
    assert propose(_finding(workload, "budget_exceeded", "a3"), in_force) == {
        "max_tool_calls": 50,
        "max_reasoning_tokens": 50_000,
    }
    # A loop: its threshold, and the tool calls a decision can hold it to.
    assert propose(_finding(workload, "reasoning_loop", "b"), in_force) == {
        "loop_threshold": 2,
        "max_tool_calls": 50,
    }
    assert propose(_finding(workload, "session_overrun", "c"), in_force) == {
        "max_session_seconds": 900
    }
    assert propose(_finding(workload, "idle_timeout", "d"), in_force) == {
        "idle_timeout_seconds": 150
    }
    assert propose(_finding(workload, "intent_drift", "e"), in_force) == {}
    # A loop threshold already at its lowest has nothing left to halve.
    assert propose(_finding(workload, "reasoning_loop", "f"), {"loop_threshold": 2}) == {}
    assert narrowing.caps_effect({"max_tool_calls": 5, "loop_threshold": 2}) == (
        "Each call must now name its session; the next decision holds sessions to Tool calls "
        "≤ 5; evaluation judges them by Loop threshold ≤ 2."
    )


def test_the_finding_page_offers_the_proposal_and_shows_field_errors_in_place(
    client, workload, reviewer
):
    finding = _finding(workload)
    client.force_login(reviewer)
    page = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    assert 'id="narrow-form"' in page
    assert 'name="max_tool_calls" value="50"' in page
    assert "In force: 100" in page
    url = reverse("findings:narrow", args=[finding.pk])
    refused = client.post(
        url, {"max_tool_calls": "120", "reason": "Runaway"}, HTTP_HX_REQUEST="true"
    )
    assert refused.status_code == 422
    assert refused["HX-Retarget"] == "#narrow-form"
    body = refused.content.decode()
    assert "would not narrow it" in body and 'value="120"' in body
    assert not ContainmentAction.objects.exists()
    done = client.post(url, {"max_tool_calls": "40", "reason": "Runaway"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 200 and done["HX-Redirect"].endswith(f"/findings/{finding.pk}/")
    page = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    assert "Narrowed the session limits (Tool calls ≤ 40)" in page
    assert 'id="narrow-form"' not in page  # once per finding


def test_the_workload_page_says_what_holds_its_limits(client, workload, reviewer, admin_user):
    action = _narrow(workload, reviewer, max_tool_calls=40)
    client.force_login(admin_user)
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert f"finding #{action.finding_id}" in page
    assert "Tool calls ≤ 40" in page
    assert 'data-effective="max_tool_calls">40<' in page
    services.containment_reverse(action=action, by=admin_user, reason="Fixed")
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert 'data-testid="narrowed"' not in page
    assert 'data-effective="max_tool_calls">100<' in page


def test_the_finding_api_shows_the_caps(workload, reviewer, client):
    action = _narrow(workload, reviewer, max_tool_calls=40)
    client.force_login(reviewer)
    body = client.get(f"/api/v1/findings/{action.finding_id}").json()
    assert body["containment"][0]["action"] == "narrow_sessions"
    assert body["containment"][0]["limits"] == {"max_tool_calls": 40}


def test_the_exported_snapshot_carries_the_caps(workload, reviewer):
    from governance.decisions.snapshot import snapshot_load

    _narrow(workload, reviewer, max_tool_calls=40, idle_timeout_seconds=60)
    entry = snapshot_load().workloads["triage"]
    assert (entry.max_tool_calls, entry.idle_timeout_seconds) == (40, 60)


def test_a_narrowed_workload_refuses_calls_that_name_no_session(
    client, workload, reviewer, admin_user, decide_secret
):
    assert ask(client, decide_secret)["decision"] == "allow"
    action = _narrow(workload, reviewer, max_tool_calls=1)
    sessionless = ask(client, decide_secret)
    assert sessionless["decision"] == "deny"
    assert sessionless["reasons"][0]["code"] == "session_required"
    assert ask(client, decide_secret, session="run-d")["decision"] == "allow"
    services.containment_reverse(action=action, by=admin_user, reason="Fixed")
    assert ask(client, decide_secret)["decision"] == "allow"


def test_cedar_refuses_sessionless_calls_of_a_narrowed_workload():
    import math

    import cedarpy

    from governance.decisions.evaluator import SessionPlan, static_verdict
    from governance.decisions.export import cedar_entities, cedar_policies, cedar_request
    from governance.decisions.snapshot import snapshot_build

    snapshot = snapshot_build(
        version=1,
        rules=[],
        workloads=[
            {"slug": "w-a", "status": "active", "classified": True, "sessions_required": True}
        ],
        tools=[{"slug": "t.1", "capability": "web_access"}],
        grants=[{"workload": "w-a", "tool": "t.1", "valid_from": 0, "valid_until": math.inf}],
    )
    policies, entities = cedar_policies(snapshot), cedar_entities(snapshot)
    for session in (None, "run-1"):
        cedar = cedarpy.is_authorized(cedar_request("w-a", "t.1", 5, session), policies, entities)
        assert not cedar.diagnostics.errors
        mandate = static_verdict(snapshot, None, "w-a", "t.1", session, 5.0)
        assert cedar.allowed == isinstance(mandate, SessionPlan) == (session is not None)


def test_merging_findings_keeps_both_narrowings_whole_with_their_times(workload, reviewer):
    """The survivor holds both records, each with its caps and the time it was taken: the
    caps in force are unchanged now and at every earlier moment evaluation may ask about."""
    kept = _narrow(workload, reviewer, key="kept", max_tool_calls=50)
    duplicate = _narrow(workload, reviewer, key="dup", max_tool_calls=10, loop_threshold=2)
    taken_earlier = timezone.now() - timedelta(hours=2)
    ContainmentAction.objects.filter(pk=kept.pk).update(created_at=taken_earlier)
    between = taken_earlier + timedelta(hours=1)

    def caps_at(moment):
        policy = policy_snapshots({workload.pk}, at=timezone.now())[workload.pk]
        return limits_at(policy, moment).max_tool_calls

    before = (caps_at(between), narrowing.caps_in_force([workload.pk]))
    version = PolicyState.objects.get(id=1).version
    services.finding_merge(duplicate=duplicate.finding, into=kept.finding)
    assert (caps_at(between), narrowing.caps_in_force([workload.pk])) == before
    assert before[0] == 50
    records = ContainmentAction.objects.filter(finding=kept.finding).order_by("created_at")
    assert [(r.pk, r.limits) for r in records] == [
        (kept.pk, {"max_tool_calls": 50}),
        (duplicate.pk, {"max_tool_calls": 10, "loop_threshold": 2}),
    ]
    assert PolicyState.objects.get(id=1).version == version  # nothing in force changed
    # A refusal names the finding once, though it holds two narrowings now.
    assert narrowing.narrowing_findings(workload.pk, ["max_tool_calls"]) == [kept.finding_id]
    merged = AuditEvent.objects.get(action="finding.merged")
    assert merged.before["merged_containment"][0]["limits"] == {
        "max_tool_calls": 10,
        "loop_threshold": 2,
    }


def test_a_window_request_filed_before_a_narrowing_cannot_be_approved_under_it(
    workload, reviewer, owner, approver, admin_user
):
    req = _ask_for_a_longer_window(owner, workload)
    action = _narrow(workload, reviewer, max_tool_calls=5)
    with pytest.raises(Conflict) as refused:
        approvals.access_request_approve(access_request=req, by=approver)
    assert refused.value.code == "narrowed"
    assert f"finding #{action.finding_id}" in refused.value.message
    assert not SessionExtension.objects.filter(workload=workload).exists()


def test_an_owner_reads_what_holds_their_workload_without_links_they_cannot_open(
    client, workload, reviewer, owner
):
    from tests.decisions.test_session_gate import _finding as drift

    action = _narrow(workload, reviewer, max_tool_calls=40)
    gate = services.containment_apply(
        finding=drift(workload, key="g"), action="gate_sessions", by=reviewer, reason="Drift"
    )
    client.force_login(owner)
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    for finding_id in (action.finding_id, gate.finding_id):
        assert f"finding #{finding_id}" in page
        assert reverse("findings:detail", args=[finding_id]) not in page
    assert "Lift the gate" not in page


def test_the_containment_card_says_why_it_was_taken_and_why_reversed(
    client, workload, reviewer, admin_user
):
    from tests.factories import tier

    action = _narrow(workload, reviewer, max_tool_calls=40)
    services.containment_reverse(action=action, by=admin_user, reason="Budget was a typo")
    client.force_login(reviewer)
    page = client.get(reverse("findings:detail", args=[action.finding_id])).content.decode()
    assert '<q class="reason">Runaway</q>' in page
    assert '<q class="reason">Budget was a typo</q>' in page
    # The tier's rule says so too.
    top = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    finding = _finding(top, kind="reasoning_loop", key="auto")
    finding.severity = "high"
    finding.save()
    with transaction.atomic():
        (gate,) = services.finding_contain(finding=finding)
    assert gate.reason == "The Boundary crossing tier's rule for a high finding."


def test_a_mistaken_narrowing_is_reversed_and_taken_again_from_the_same_finding(
    client, workload, reviewer, admin_user
):
    first = _narrow(workload, reviewer, max_tool_calls=2)
    finding = first.finding
    with pytest.raises(Conflict):  # one in force per finding
        services.containment_apply(
            finding=finding, action=NARROW, by=reviewer, reason="x", limits={"max_tool_calls": 1}
        )
    services.containment_reverse(action=first, by=admin_user, reason="Meant 20, not 2")
    client.force_login(reviewer)
    page = client.get(reverse("findings:detail", args=[finding.pk])).content.decode()
    assert 'id="narrow-form"' in page  # offered again
    again = services.containment_apply(
        finding=finding, action=NARROW, by=reviewer, reason="Runaway", limits={"max_tool_calls": 20}
    )
    assert narrowing.caps_in_force([workload.pk]) == {workload.pk: {"max_tool_calls": 20}}
    assert list(finding.containment.order_by("pk").values_list("pk", flat=True)) == [
        first.pk,
        again.pk,
    ]


def test_a_refused_window_names_only_the_findings_that_cap_what_it_asks_for(
    workload, reviewer, owner
):
    calls = _narrow(workload, reviewer, key="calls", max_tool_calls=5)
    loops = _narrow(workload, reviewer, key="loops", loop_threshold=2)
    with pytest.raises(Conflict) as refused:
        _ask_for_a_longer_window(owner, workload)
    assert f"finding #{calls.finding_id} caps tool calls" in refused.value.message
    assert f"#{loops.finding_id}" not in refused.value.message
