"""Containment's third measure: a finding makes each session of its workload need an approval.

The decision endpoint then denies every call of a session nobody approved; the owner files a
session-run request, approvers approve it like any request, and that session runs for
SESSION_APPROVAL_HOURS. An IAM admin lifts the gate by reversing the containment."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from governance.approvals import services as approvals
from governance.approvals.impact import SESSION_RUN_STEP
from governance.decisions.runtime import runtime
from governance.errors import Conflict, DomainError
from governance.findings import services
from governance.models import (
    AccessRequest,
    AuditEvent,
    ContainmentAction,
    Decision,
    Finding,
    PolicyState,
)
from governance.tokens import service_token_create
from tests.decisions.conftest import ask
from tests.evaluation.rows import make_session
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import Session, SessionApproval, Tool, Workload
from workloads.services import workload_set_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def workload(owner):
    workload = ClassifiedWorkloadFactory(owner=owner, slug="triage")
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="web-search"))
    return workload


def _finding(workload, key="gate", severity="medium"):
    return Finding.objects.create(
        kind="intent_drift",
        severity=severity,
        workload=workload,
        session=make_session(workload),
        summary="The final action strayed from the request.",
        dedupe_key=key,
        occurred_at=timezone.now(),
    )


@pytest.fixture
def gated(workload, reviewer):
    action = services.containment_apply(
        finding=_finding(workload),
        action="gate_sessions",
        by=reviewer,
        reason="Drifted on prod",
    )
    workload.refresh_from_db()
    return action


def _session(workload, external_id):
    return Session.objects.create(workload=workload, external_id=external_id)


def _session_run(owner, workload, session="run-1"):
    return approvals.access_request_create(
        by=owner,
        workload=workload,
        kind=AccessRequest.Kind.SESSION_RUN,
        session=session,
        justification="The nightly run, with the fix.",
    )


def _approve(req, *approvers):
    """Approve with each approver in turn until the request is granted."""
    for person in approvers:
        req.refresh_from_db()
        if req.status != AccessRequest.Status.PENDING:
            break
        approvals.access_request_approve(access_request=req, by=person)
    req.refresh_from_db()
    return req


def test_gating_needs_a_reason_is_audited_and_changes_the_policy(workload, reviewer):
    finding = _finding(workload)
    with pytest.raises(DomainError):
        services.containment_apply(finding=finding, action="gate_sessions", by=reviewer, reason="")
    version = PolicyState.objects.get(id=1).version
    services.containment_apply(
        finding=finding, action="gate_sessions", by=reviewer, reason="Drifted on prod"
    )
    workload.refresh_from_db()
    assert workload.sessions_need_approval
    assert workload.status == Workload.Status.ACTIVE  # lighter than a suspension
    assert PolicyState.objects.get(id=1).version > version
    gated = AuditEvent.objects.get(action="workload.sessions_gated")
    assert gated.actor == reviewer and "Drifted on prod" in gated.after["reason"]
    assert gated.before["sessions_need_approval"] is False
    assert gated.after["sessions_need_approval"] is True
    assert services.containment_options(finding) == [("suspend_workload", "Suspend the workload")]


def test_every_unapproved_call_is_denied_with_its_reason(client, workload, gated, decide_secret):
    unapproved = ask(client, decide_secret, session="run-1")
    assert unapproved["decision"] == "deny"
    assert unapproved["reasons"][0]["code"] == "session_approval_required"
    assert "run-1" in unapproved["reasons"][0]["message"]
    sessionless = ask(client, decide_secret)
    assert sessionless["decision"] == "deny"
    assert sessionless["reasons"][0]["code"] == "session_approval_required"
    # A tool it holds no grant of says so first: the gate never widens what is denied.
    assert ask(client, decide_secret, tool="code-exec", session="run-1")["reasons"][0]["code"] == (
        "tool_not_granted"
    )


def test_an_approved_session_runs_and_no_other(
    client, workload, gated, owner, approver, decide_secret
):
    req = _session_run(owner, workload)
    # One approval, whatever the tier asks of grants and the open finding behind the gate.
    assert [s.reason for s in req.steps.all()] == [SESSION_RUN_STEP.reason]
    req = _approve(req, approver)
    assert req.status == AccessRequest.Status.APPROVED
    approval = SessionApproval.objects.get(workload=workload, session="run-1")
    assert approval.request == req and approval.approved_by == approver
    hours = (approval.valid_until - approval.valid_from).total_seconds() / 3600
    assert hours == pytest.approx(24)
    assert AuditEvent.objects.filter(action="session_approval.create").count() == 1
    assert ask(client, decide_secret, session="run-1")["decision"] == "allow"
    assert ask(client, decide_secret, session="run-2")["decision"] == "deny"
    assert ask(client, decide_secret)["decision"] == "deny"


def test_the_approval_ends_at_its_exact_instant(
    client, workload, gated, owner, approver, admin_user, decide_secret
):
    _approve(_session_run(owner, workload), approver, admin_user)
    end = SessionApproval.objects.get(session="run-1").valid_until
    with time_machine.travel(end - timedelta(seconds=1), tick=False):
        assert ask(client, decide_secret, session="run-1")["decision"] == "allow"
    with time_machine.travel(end, tick=False):
        answer = ask(client, decide_secret, session="run-1")
    assert answer["reasons"][0]["code"] == "session_approval_required"


def test_revoking_an_approval_stops_the_session_at_once(
    client, workload, gated, owner, approver, admin_user, decide_secret
):
    _approve(_session_run(owner, workload), approver, admin_user)
    assert ask(client, decide_secret, session="run-1")["decision"] == "allow"
    approval = SessionApproval.objects.get(session="run-1")
    approvals.session_approval_revoke(approval=approval, by=owner, reason="Run finished")
    assert ask(client, decide_secret, session="run-1")["decision"] == "deny"
    assert AuditEvent.objects.get(action="session_approval.revoke").after["status"] == "revoked"


def test_a_session_run_request_is_refused_when_it_makes_no_sense(
    workload, owner, approver, admin_user
):
    with pytest.raises(Conflict) as not_gated:
        _session_run(owner, workload)
    assert not_gated.value.code == "sessions_not_gated"
    Workload.objects.filter(pk=workload.pk).update(sessions_need_approval=True)
    workload.refresh_from_db()
    with pytest.raises(DomainError) as nameless:
        _session_run(owner, workload, session="  ")
    assert nameless.value.field == "session"
    with pytest.raises(DomainError) as too_long:
        _session_run(owner, workload, session="s" * 201)
    assert too_long.value.field == "session"
    with pytest.raises(DomainError) as with_duration:
        approvals.access_request_create(
            by=owner,
            workload=workload,
            kind=AccessRequest.Kind.SESSION_RUN,
            session="run-1",
            duration_days=3,
            justification="Longer please.",
        )
    assert with_duration.value.field == "duration_days"
    with pytest.raises(DomainError) as tools_run:
        approvals.access_request_create(
            by=owner,
            workload=workload,
            kind=AccessRequest.Kind.TOOLS,
            tools=[Tool.objects.get(slug="crm-api")],
            session="run-1",
            justification="A session on a tools request.",
        )
    assert tools_run.value.field == "session"
    req = _session_run(owner, workload)
    with pytest.raises(Conflict) as pending:
        _session_run(owner, workload)
    assert pending.value.code == "already_pending"
    _approve(req, approver, admin_user)
    with pytest.raises(Conflict) as approved:
        _session_run(owner, workload)
    assert approved.value.code == "already_approved"


def test_lifting_the_gate_cancels_the_requests_filed_under_it(
    workload, gated, owner, approver, admin_user
):
    req = _session_run(owner, workload)
    services.containment_reverse(action=gated, by=admin_user, reason="Drift fixed")
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.CANCELLED
    assert "Drift fixed" in req.decision_reason
    cancel = AuditEvent.objects.get(action="request.cancel", object_id=str(req.pk))
    assert cancel.before["status"] == "pending" and cancel.before["session"] == "run-1"
    assert cancel.after["status"] == "cancelled"
    with pytest.raises(Conflict) as closed:
        approvals.access_request_approve(access_request=req, by=approver)
    assert closed.value.code == "not_pending"
    assert not SessionApproval.objects.exists()


def test_an_approval_that_lands_after_the_gate_went_is_refused(workload, gated, owner, approver):
    req = _session_run(owner, workload)
    # As if the gate were lifted between filing and approving, with the request left pending.
    Workload.objects.filter(pk=workload.pk).update(sessions_need_approval=False)
    with pytest.raises(Conflict) as moot:
        approvals.access_request_approve(access_request=req, by=approver)
    assert moot.value.code == "sessions_not_gated"
    assert not SessionApproval.objects.exists()


def test_the_gate_lifts_when_the_last_finding_holding_it_is_reversed(
    client, workload, gated, reviewer, admin_user, decide_secret
):
    second = services.containment_apply(
        finding=_finding(workload, key="gate-2"),
        action="gate_sessions",
        by=reviewer,
        reason="A second drift",
    )
    first = services.containment_reverse(action=gated, by=admin_user, reason="First one fixed")
    assert first.still_held_by == [second.finding_id]
    workload.refresh_from_db()
    assert workload.sessions_need_approval
    assert ask(client, decide_secret, session="run-9")["decision"] == "deny"
    last = services.containment_reverse(action=second, by=admin_user, reason="Both fixed")
    assert last.still_held_by == []
    workload.refresh_from_db()
    assert not workload.sessions_need_approval
    assert ask(client, decide_secret, session="run-9")["decision"] == "allow"
    lifted = AuditEvent.objects.get(action="workload.sessions_ungated")
    assert "Both fixed" in lifted.after["reason"]


def test_the_finding_page_says_what_a_partial_reversal_left(
    client, workload, gated, reviewer, admin_user
):
    second = services.containment_apply(
        finding=_finding(workload, key="gate-2"),
        action="gate_sessions",
        by=reviewer,
        reason="A second drift",
    )
    client.force_login(admin_user)
    # The prompt says so before the click, too.
    page = client.get(reverse("findings:detail", args=[gated.finding_id])).content.decode()
    assert (
        f"Finding #{second.finding_id} still holds the measure, so its sessions still need "
        "approval until that is reversed too." in page
    )
    other = client.get(reverse("findings:detail", args=[second.finding_id])).content.decode()
    assert f"Finding #{gated.finding_id} still holds the measure" in other
    response = client.post(
        reverse("findings:reverse_containment", args=[gated.pk]),
        {"reason": "First one fixed"},
        follow=True,
    )
    page = client.get(reverse("findings:detail", args=[second.finding_id])).content.decode()
    assert "still holds the measure" not in page  # the last holder lifts the gate
    assert "Let this workload's sessions run without approval again" in page
    assert [str(m) for m in response.context["messages"]] == [
        "Reversed. But its sessions still need approval: the containment of finding "
        f"#{second.finding_id} holds it too."
    ]


def test_the_owner_sees_refused_sessions_and_asks_for_one(
    client, workload, gated, owner, decide_secret
):
    ask(client, decide_secret, session="run-1")
    ask(client, decide_secret, session="run-1")
    ask(client, decide_secret, session="run-2")
    runtime().log.flush()
    assert Decision.objects.filter(reason_code="session_approval_required").count() == 3
    client.force_login(owner)
    page = client.get(reverse("workloads:detail", args=[workload.slug]))
    html = page.content.decode()
    assert "sessions need approval" in html
    assert page.context["gate_findings"] == [gated.finding_id]
    assert f"finding #{gated.finding_id}" in html  # named; the owner cannot open findings
    blocked = page.context["blocked_sessions"]
    assert [(b.session, b.refusals, b.state) for b in blocked] == [
        ("run-2", 1, ""),
        ("run-1", 2, ""),
    ]
    link = f"{reverse('approvals:new')}?workload=triage&amp;kind=session_run&amp;session=run-1"
    assert link in html
    form = client.get(
        reverse("approvals:new"), {"workload": "triage", "kind": "session_run", "session": "run-1"}
    )
    assert form.context["form"].initial == {
        "workload": "triage",
        "kind": "session_run",
        "session": "run-1",
    }
    response = client.post(
        reverse("approvals:new"),
        {
            "workload": "triage",
            "kind": "session_run",
            "session": "run-1",
            "justification": "The nightly run.",
        },
    )
    assert response.status_code == 302
    req = AccessRequest.objects.get(kind="session_run")
    assert req.session == "run-1" and req.requested_by == owner
    page = client.get(reverse("workloads:detail", args=[workload.slug]))
    states = {b.session: b.state for b in page.context["blocked_sessions"]}
    assert states == {"run-1": "awaiting approval", "run-2": ""}


def test_a_reinstate_does_not_bypass_a_finding_suspension(workload, reviewer, admin_user):
    action = services.containment_apply(
        finding=_finding(workload, key="suspend"),
        action="suspend_workload",
        by=reviewer,
        reason="Looping",
    )
    with pytest.raises(Conflict) as contained:
        workload_set_status(
            workload=workload, status=Workload.Status.ACTIVE, by=admin_user, reason="Looks fine"
        )
    assert contained.value.code == "contained"
    assert f"#{action.finding_id}" in contained.value.message
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    services.containment_reverse(action=action, by=admin_user, reason="Loop fixed")
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE
    action.refresh_from_db()
    assert action.reversed_by == admin_user


def test_a_suspension_nobody_contained_can_still_be_reinstated(workload, admin_user):
    workload_set_status(
        workload=workload, status=Workload.Status.SUSPENDED, by=admin_user, reason="Audit"
    )
    workload_set_status(
        workload=workload, status=Workload.Status.ACTIVE, by=admin_user, reason="Audit done"
    )
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE


def test_session_approvals_expire_with_the_other_windows(
    workload, gated, owner, approver, admin_user
):
    _approve(_session_run(owner, workload), approver, admin_user)
    approval = SessionApproval.objects.get()
    assert approvals.grants_expire(now=approval.valid_until + timedelta(seconds=1)) == 1
    approval.refresh_from_db()
    assert approval.status == "expired"
    assert AuditEvent.objects.filter(action="session_approval.expire").count() == 1


def test_a_runtime_token_asks_for_its_refused_session_over_the_api(workload, gated, owner):
    from rest_framework.test import APIClient

    issued = service_token_create(name="runtime", scopes=["write", "read"], workloads=[workload])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    body = {
        "workload": "triage",
        "kind": "session_run",
        "session": "run-7",
        "justification": "Rerun after the fix.",
        "on_behalf_of": owner.username,
    }
    response = client.post("/api/v1/requests", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["session"] == "run-7" and response.json()["kind"] == "session_run"
    again = client.post("/api/v1/requests", body, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_pending"


def test_the_snapshot_carries_approvals_of_gated_workloads_only(
    workload, gated, owner, approver, admin_user
):
    from governance.decisions.export import snapshot_json
    from governance.decisions.snapshot import snapshot_load

    _approve(_session_run(owner, workload), approver, admin_user)
    other = ClassifiedWorkloadFactory(slug="ungated")
    SessionApproval.objects.create(
        workload=other, session="stale", valid_until=timezone.now() + timedelta(hours=1)
    )
    exported = snapshot_json(snapshot_load())["workloads"]
    assert exported["triage"]["sessions_need_approval"] is True
    assert list(exported["triage"]["approved_sessions"]) == ["run-1"]
    assert exported["ungated"]["sessions_need_approval"] is False
    assert exported["ungated"]["approved_sessions"] == {}


def test_a_new_finding_on_an_approved_session_ends_its_approval(
    client, workload, gated, owner, approver, reviewer, decide_secret
):
    _approve(_session_run(owner, workload), approver)
    assert ask(client, decide_secret, session="run-1")["decision"] == "allow"
    again = _finding(workload, key="again")
    Finding.objects.filter(pk=again.pk).update(session=_session(workload, "run-1"))
    again.refresh_from_db()
    services.containment_apply(
        finding=again, action="gate_sessions", by=reviewer, reason="run-1 loops again"
    )
    approval = SessionApproval.objects.get(session="run-1")
    assert approval.status == "revoked" and "run-1 loops again" in approval.revoke_reason
    assert ask(client, decide_secret, session="run-1")["decision"] == "deny"


def test_approvals_end_with_the_gate_and_do_not_come_back_with_the_next(
    client, workload, gated, owner, approver, reviewer, admin_user, decide_secret
):
    _approve(_session_run(owner, workload), approver)
    services.containment_reverse(action=gated, by=admin_user, reason="Drift fixed")
    assert SessionApproval.objects.get(session="run-1").status == "revoked"
    services.containment_apply(
        finding=_finding(workload, key="later"),
        action="gate_sessions",
        by=reviewer,
        reason="A new drift",
    )
    assert ask(client, decide_secret, session="run-1")["decision"] == "deny"


def test_one_approval_is_one_run_even_after_the_session_state_would_lapse(
    client, workload, gated, owner, approver, decide_secret, state
):
    _approve(_session_run(owner, workload), approver)
    start = timezone.now()
    window = workload.tier.max_session_seconds
    with time_machine.travel(start, tick=False):
        assert ask(client, decide_secret, session="run-1")["decision"] == "allow"
    with time_machine.travel(start + timedelta(seconds=window + 1), tick=False):
        over = ask(client, decide_secret, session="run-1")
    assert over["reasons"][0]["code"] == "session_expired"
    # Long after an ungated session's state would have lapsed, the id cannot start again.
    from governance.decisions.evaluator import SessionPlan
    from governance.decisions.state import state_ttl

    plan = SessionPlan("triage", "run-1", window, 60, 10, (), (), "metadata")
    assert state_ttl(plan, 0.0) == window + 60 + 60
    approval_end = SessionApproval.objects.get(session="run-1").valid_until.timestamp()
    plan.keep_until = approval_end
    assert state_ttl(plan, start.timestamp()) >= approval_end - start.timestamp()
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        later = ask(client, decide_secret, session="run-1")
    assert later["reasons"][0]["code"] == "session_expired"


def test_a_padded_session_id_is_refused_not_trimmed(workload, gated, owner):
    with pytest.raises(DomainError) as padded:
        _session_run(owner, workload, session=" run-1")
    assert padded.value.field == "session"
    assert not AccessRequest.objects.exists()


def test_merging_keeps_the_record_that_still_holds_the_gate(workload, reviewer, admin_user):
    kept = _finding(workload, key="kept")
    first = services.containment_apply(
        finding=kept, action="gate_sessions", by=reviewer, reason="Drift"
    )
    duplicate = _finding(workload, key="duplicate")
    holding = services.containment_apply(
        finding=duplicate, action="gate_sessions", by=reviewer, reason="Drift again"
    )
    services.containment_reverse(action=first, by=admin_user, reason="First fixed")
    services.finding_merge(duplicate=duplicate, into=kept)
    # Both records now belong to the survivor: the reversed one as history.
    assert list(
        ContainmentAction.objects.order_by("pk").values_list("pk", "finding_id", "reversed_at")
    ) == [
        (first.pk, kept.pk, ContainmentAction.objects.get(pk=first.pk).reversed_at),
        (holding.pk, kept.pk, None),
    ]
    services.containment_reverse(
        action=ContainmentAction.objects.get(pk=holding.pk), by=admin_user, reason="All fixed"
    )
    workload.refresh_from_db()
    assert not workload.sessions_need_approval


def test_the_request_email_names_the_session(workload, gated, owner):
    from governance.approvals.notifications import _describe

    req = _session_run(owner, workload)
    assert _describe(req) == (
        "leave to run session run-1 for 24 hours while the workload's sessions need approval"
    )


def test_the_workload_page_refuses_to_reinstate_past_a_containment(
    client, workload, reviewer, admin_user
):
    action = services.containment_apply(
        finding=_finding(workload, key="suspend"),
        action="suspend_workload",
        by=reviewer,
        reason="Looping",
    )
    client.force_login(admin_user)
    response = client.post(
        reverse("workloads:status", args=[workload.slug]),
        {"status": "active", "reason": "Looks fine"},
    )
    assert response.status_code == 422
    assert f"finding #{action.finding_id}" in response.context["status_error"]
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED


def test_a_contained_workload_page_offers_no_reinstate_but_the_finding(
    client, workload, reviewer, admin_user
):
    action = services.containment_apply(
        finding=_finding(workload, key="suspend"),
        action="suspend_workload",
        by=reviewer,
        reason="Looping",
    )
    client.force_login(admin_user)
    page = client.get(reverse("workloads:detail", args=[workload.slug]))
    assert [t["status"] for t in page.context["transitions"]] == ["retired"]
    assert page.context["contained_by"] == [action.finding_id]
    assert reverse("findings:detail", args=[action.finding_id]) in page.content.decode()


def test_the_database_allows_one_pending_request_per_session(workload, gated, owner):
    from django.db import IntegrityError, transaction

    first = _session_run(owner, workload)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRequest.objects.create(
            workload=workload,
            kind=AccessRequest.Kind.SESSION_RUN,
            session=first.session,
            justification="A racing second filing.",
            requested_by=owner,
            expires_at=first.expires_at,
        )


def test_a_filing_that_lost_the_race_is_a_conflict(workload, gated, owner, monkeypatch):
    _session_run(owner, workload)
    # As if both filings had passed the check before either was stored.
    monkeypatch.setattr(approvals, "_check_session_run", lambda *args, **kwargs: None)
    with pytest.raises(Conflict) as lost:
        _session_run(owner, workload)
    assert lost.value.code == "already_pending"
    assert AccessRequest.objects.count() == 1


def _evaluate_calls(session, *offsets):
    from django.db.models import F

    from governance.evaluation.services import events_evaluate
    from tests.evaluation.rows import add_events, id_range
    from workloads.models import UsageEvent

    events = add_events(session, *[("tool_call", s, {"tool": "web-search"}) for s in offsets])
    # Reported as they happen: a call dated ahead of its arrival is judged at its arrival.
    UsageEvent.objects.filter(pk__in=[e.pk for e in events]).update(received_at=F("occurred_at"))
    events_evaluate(**id_range(events))
    return Finding.objects.filter(session=session, kind="unapproved_session_use")


def test_evaluation_flags_tool_use_in_a_session_nobody_approved(
    workload, gated, owner, approver, settings
):
    """A runtime that skips the decision endpoint is still caught: the events say it."""
    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    before_gate = timezone.now() - timedelta(hours=1)
    early = make_session(workload, started_at=before_gate)
    assert not _evaluate_calls(early, 0).exists()  # before the gate: nothing to flag

    unapproved = make_session(workload, started_at=timezone.now())
    (flagged,) = _evaluate_calls(unapproved, 1, 2)
    assert flagged.severity == "high" and flagged.tool == "web-search"
    assert unapproved.external_id in flagged.summary

    _approve(_session_run(owner, workload, session="run-approved"), approver)
    approved = _session(workload, "run-approved")
    Session.objects.filter(pk=approved.pk).update(started_at=timezone.now())
    approved.refresh_from_db()
    assert not _evaluate_calls(approved, 1).exists()


def test_the_gate_detector_reads_gate_and_approval_windows_at_the_event_time():
    from governance.evaluation.detectors import EventData, PolicySnapshot, check_session_gate

    t0 = timezone.now()
    policy = PolicySnapshot(
        workload_status="active",
        tier_position="middle",
        session_gates=((t0, t0 + timedelta(hours=1)), (t0 + timedelta(hours=2), None)),
    )
    approval = ((t0 + timedelta(minutes=10), t0 + timedelta(minutes=20)),)  # ended early

    def flagged(minutes, kind="tool_call"):
        event = EventData(1, kind, t0 + timedelta(minutes=minutes), tool="web-search")
        return check_session_gate(event, policy, approval, "run-1") is not None

    assert flagged(5)  # gated, before its approval
    assert not flagged(15)  # within the approval
    assert flagged(25)  # after the approval was revoked
    assert not flagged(90)  # between two gates
    assert flagged(150)  # the standing gate
    assert not flagged(150, kind="reasoning_step")  # only tool calls count
    assert not flagged(-5)  # before any gate


def test_a_call_just_after_the_gate_or_an_approval_ended_is_not_flagged(
    workload, owner, approver, reviewer, settings
):
    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 10
    services.containment_apply(
        finding=_finding(workload), action="gate_sessions", by=reviewer, reason="Drift"
    )
    workload.refresh_from_db()
    in_flight = make_session(workload, started_at=timezone.now())
    assert not _evaluate_calls(in_flight, 2).exists()  # allowed just before the gate
    late = make_session(workload, started_at=timezone.now())
    assert _evaluate_calls(late, 30).exists()

    _approve(_session_run(owner, workload, session="run-revoked"), approver)
    approval = SessionApproval.objects.get(session="run-revoked")
    approvals.session_approval_revoke(approval=approval, by=owner, reason="Done early")
    revoked = _session(workload, "run-revoked")
    Session.objects.filter(pk=revoked.pk).update(started_at=timezone.now())
    revoked.refresh_from_db()
    assert not _evaluate_calls(revoked, 5).exists()  # within the grace of the revocation
    assert _evaluate_calls(revoked, 60).exists()  # the revocation ended its window


def test_spans_not_yet_named_are_not_flagged_but_a_named_session_is(workload, gated, settings):
    from workloads.models import SessionTrace

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    orphan = make_session(workload, started_at=timezone.now())
    Session.objects.filter(pk=orphan.pk).update(source="otlp", external_id="ab" * 16)
    orphan.refresh_from_db()
    assert not _evaluate_calls(orphan, 1).exists()
    # A conversation id that looks like a trace id (uuid4().hex) is still a named session.
    named = make_session(workload, started_at=timezone.now())
    Session.objects.filter(pk=named.pk).update(source="otlp", external_id="cd" * 16)
    SessionTrace.objects.create(workload=workload, trace_id="ef" * 16, session=named)
    named.refresh_from_db()
    assert _evaluate_calls(named, 1).exists()


def _otlp_session(workload, external_id, started_at, heard_at=None):
    """An OpenTelemetry session whose spans claim `started_at`, first heard of at `heard_at`
    (by default, then too)."""
    session = make_session(workload, started_at=started_at)
    Session.objects.filter(pk=session.pk).update(
        source="otlp", external_id=external_id, created_at=heard_at or started_at
    )
    session.refresh_from_db()
    return session


def test_spans_whose_name_never_came_are_checked_against_the_gate_after_their_deadline(
    workload, gated, settings
):
    """The span naming a session ends with the run (within its window) and is exported
    within the lateness allowed; spans still unnamed after that are judged as they are."""
    from governance.evaluation.services import unnamed_sessions_check
    from governance.evaluation.tasks import check_unnamed_sessions
    from governance.schedule import BEAT_SCHEDULE

    assert any(e["task"] == check_unnamed_sessions.name for e in BEAT_SCHEDULE.values())

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    window = workload.tier.max_session_seconds + settings.MANDATE_EVENT_MAX_LATENESS_SECONDS
    orphan = _otlp_session(workload, "ab" * 16, timezone.now())
    assert not _evaluate_calls(orphan, 1).exists()  # waiting for its name
    assert unnamed_sessions_check() == 0  # not yet due

    with time_machine.travel(timezone.now() + timedelta(seconds=window + 5)):
        late = _otlp_session(workload, "cd" * 16, timezone.now() - timedelta(seconds=window + 1))
        assert check_unnamed_sessions.apply().get() == 1
        (flagged,) = Finding.objects.filter(session=orphan, kind="unapproved_session_use")
        assert flagged.evidence and "ab" * 16 in flagged.summary
        assert unnamed_sessions_check() == 0  # looked at once
        # A span arriving after the deadline is judged with the gate in its own batch.
        assert _evaluate_calls(late, 2).exists()


def test_a_named_session_is_left_to_its_own_evaluation(workload, gated, settings):
    from governance.evaluation.services import unnamed_sessions_check
    from workloads.models import SessionTrace

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    long_ago = timezone.now() - timedelta(hours=3)
    named = _otlp_session(workload, "cd" * 16, long_ago)
    SessionTrace.objects.create(workload=workload, trace_id="ef" * 16, session=named)
    assert unnamed_sessions_check() == 0
    named.refresh_from_db()
    assert named.evaluation_state["name_waited"] is True


def test_spans_whose_naming_span_came_are_judged_in_the_named_session(
    workload, gated, owner, approver, settings
):
    """The naming span came (a trace link leads from their trace id to the named session)
    but the fold has not run yet: the spans wait for it, whatever their deadline, rather
    than be judged under the trace id, which no approval names."""
    from governance.evaluation.services import unnamed_sessions_check
    from workloads.models import SessionTrace

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    _approve(_session_run(owner, workload, session="conv-1"), approver)
    named = _session(workload, "conv-1")
    long_ago = timezone.now() - timedelta(hours=3)
    orphan = _otlp_session(workload, "ab" * 16, long_ago)
    SessionTrace.objects.create(
        workload=workload, trace_id="ab" * 16, session=named, fold_pending=True
    )
    assert not _evaluate_calls(orphan, 1).exists()
    assert unnamed_sessions_check() == 0
    orphan.refresh_from_db()
    assert "name_waited" not in orphan.evaluation_state  # looked at again after the fold


def test_a_start_dated_ahead_does_not_put_the_deadline_off(workload, gated, settings):
    """The deadline counts from when Mandate first heard of the session, if earlier than the
    start its spans claim."""
    from governance.evaluation.services import unnamed_sessions_check

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    window = workload.tier.max_session_seconds + settings.MANDATE_EVENT_MAX_LATENESS_SECONDS
    heard = timezone.now()
    ahead = _otlp_session(workload, "ab" * 16, heard + timedelta(days=3), heard_at=heard)
    _evaluate_calls(ahead, 1)
    with time_machine.travel(heard + timedelta(seconds=window + 5)):
        assert unnamed_sessions_check() == 1


def test_sessions_still_running_do_not_hold_back_another_workloads(owner, reviewer, settings):
    """Candidates are read per workload up to its own deadline: many sessions of a workload
    with a long window, not yet due, neither fill the batch nor get locked."""
    from governance.evaluation.services import unnamed_sessions_check
    from workloads.models import SessionExtension

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    long_runs, short_runs = (
        ClassifiedWorkloadFactory(owner=owner, slug=slug) for slug in ("long-runs", "short")
    )
    now, day = timezone.now(), timedelta(days=1)
    for each in (long_runs, short_runs):
        EntitlementFactory(workload=each, tool=Tool.objects.get(slug="web-search"))
        services.containment_apply(
            finding=_finding(each, key=f"gate-{each.slug}"),
            action="gate_sessions",
            by=reviewer,
            reason="Drifted",
        )
    SessionExtension.objects.create(  # six-day runs
        workload=long_runs,
        max_session_seconds=6 * 86400,
        valid_from=now - 3 * day,
        valid_until=now + 7 * day,
    )
    started = now + timedelta(minutes=1)  # under the gates
    running = [_otlp_session(long_runs, f"{n:032x}", started) for n in range(12)]
    due = _otlp_session(short_runs, "ab" * 16, started)
    for session in (*running, due):
        _evaluate_calls(session, 1)
    with time_machine.travel(now + timedelta(hours=2)):
        assert unnamed_sessions_check(limit=1) == 1
    assert Finding.objects.filter(session=due, kind="unapproved_session_use").exists()


def _fold_into(workload, target, *, gating_on_the_spans, reviewer):
    from governance.ingest.traces import _fold

    orphan = make_session(workload)
    Session.objects.filter(pk=orphan.pk).update(source="otlp", external_id="12" * 16)
    if gating_on_the_spans:
        services.containment_apply(
            finding=Finding.objects.create(
                kind="unentitled_tool",
                severity="high",
                workload=workload,
                session=orphan,
                tool="code-exec",
                summary="Called code-exec without a grant.",
                dedupe_key=f"s{orphan.pk}:unentitled_tool:code-exec",
                occurred_at=timezone.now(),
            ),
            action="gate_sessions",
            by=reviewer,
            reason="Spans misbehaved",
        )
    _fold(workload.pk, "12" * 16, orphan.pk, target.pk)


def test_a_fold_ends_the_approval_only_when_the_spans_gated(
    workload, gated, owner, approver, reviewer
):
    _approve(_session_run(owner, workload, session="conv-1"), approver)
    named = _session(workload, "conv-1")
    # The session's own earlier finding holds the gate; a later turn's spans raised nothing.
    Finding.objects.filter(pk=gated.finding_id).update(session=named)
    _fold_into(workload, named, gating_on_the_spans=False, reviewer=reviewer)
    assert SessionApproval.objects.get(session="conv-1").status == "active"
    _fold_into(workload, named, gating_on_the_spans=True, reviewer=reviewer)
    assert SessionApproval.objects.get(session="conv-1").status == "revoked"


def test_the_gate_history_outlives_its_containment_records(workload, gated, admin_user):
    from governance.evaluation.snapshot import session_gate_intervals

    before = session_gate_intervals({workload.pk})[workload.pk]
    assert len(before) == 1 and before[0][1] is None
    ContainmentAction.objects.all().delete()  # as a merge of the findings may do
    assert session_gate_intervals({workload.pk})[workload.pk] == before


def test_session_approvals_over_the_api(workload, gated, owner, approver, client):
    from rest_framework.test import APIClient

    _approve(_session_run(owner, workload), approver)
    approval = SessionApproval.objects.get()
    issued = service_token_create(name="reader", scopes=["read"], workloads=[workload])
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    listed = reader.get("/api/v1/session-approvals", {"session": "run-1", "status": "active"})
    assert listed.status_code == 200
    assert [row["session"] for row in listed.json()["results"]] == ["run-1"]
    assert (
        reader.post(f"/api/v1/session-approvals/{approval.pk}/revoke", {"reason": "x"}).status_code
        == 403
    )

    as_approver = APIClient()
    as_approver.force_authenticate(approver)
    refused = as_approver.post(
        f"/api/v1/session-approvals/{approval.pk}/revoke", {"reason": "Not mine"}, format="json"
    )
    assert refused.status_code == 403

    as_owner = APIClient()
    as_owner.force_authenticate(owner)
    revoked = as_owner.post(
        f"/api/v1/session-approvals/{approval.pk}/revoke", {"reason": "Run done"}, format="json"
    )
    assert revoked.status_code == 200, revoked.json()
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_by"] == owner.username
    again = as_owner.post(
        f"/api/v1/session-approvals/{approval.pk}/revoke", {"reason": "Again"}, format="json"
    )
    assert again.status_code == 409


def test_a_session_approval_must_last_at_least_an_hour(settings):
    from governance.checks import session_approval_hours_check

    assert session_approval_hours_check(None) == []
    settings.SESSION_APPROVAL_HOURS = 0
    (error,) = session_approval_hours_check(None)
    assert error.id == "mandate.E001"


def test_an_iam_admin_lifts_a_gate_many_findings_hold_in_one_step(
    client, workload, gated, reviewer, admin_user, owner
):
    others = [
        services.containment_apply(
            finding=_finding(workload, key=f"gate-{i}"),
            action="gate_sessions",
            by=reviewer,
            reason="Drift again",
        )
        for i in range(3)
    ]
    client.force_login(admin_user)
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert "Lift the gate (reverse all 4)" in page
    lift = reverse("findings:lift", args=[workload.slug])
    assert client.post(lift, {"action": "gate_sessions", "reason": ""}).status_code == 303
    assert Workload.objects.get(pk=workload.pk).sessions_need_approval  # no reason, no lift
    response = client.post(
        lift, {"action": "gate_sessions", "reason": "Loop fixed in 2.3"}, follow=True
    )
    ids = ", ".join(f"#{a.finding_id}" for a in [gated, *others])
    assert [str(m) for m in response.context["messages"]] == [
        "Choose the suspension or the gate to lift, and say why.",  # the refused post's
        f"Lifted: the containment of finding {ids} is reversed.",
    ]
    assert not Workload.objects.get(pk=workload.pk).sessions_need_approval
    assert not ContainmentAction.objects.filter(reversed_at__isnull=True).exists()
    reversals = AuditEvent.objects.filter(action="containment.reverse")
    assert reversals.count() == 4  # each record's reversal audited on its own
    assert AuditEvent.objects.filter(action="workload.sessions_ungated").count() == 1
    # Nothing left to lift; and the owner may not lift their own workload's containment.
    again = client.post(lift, {"action": "gate_sessions", "reason": "Again"}, follow=True)
    assert ["No finding" in str(m) for m in again.context["messages"]] == [True]
    services.containment_apply(
        finding=_finding(workload, key="gate-new"),
        action="gate_sessions",
        by=reviewer,
        reason="New drift",
    )
    with pytest.raises(DomainError):
        services.containment_lift(
            workload=workload, action="gate_sessions", by=owner, reason="Mine"
        )
    assert Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_a_suspension_many_findings_hold_is_lifted_from_the_workload_page(
    client, workload, reviewer, admin_user
):
    held = [
        services.containment_apply(
            finding=_finding(workload, key=f"suspend-{i}"),
            action="suspend_workload" if i == 0 else "gate_sessions",
            by=reviewer,
            reason="Runaway",
        )
        for i in range(2)
    ]
    client.force_login(admin_user)
    page = client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert "Lift the suspension" in page and "Lift the gate" in page
    client.post(
        reverse("findings:lift", args=[workload.slug]),
        {"action": "suspend_workload", "reason": "Fixed"},
    )
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE
    assert workload.sessions_need_approval  # the other measure stands
    assert ContainmentAction.objects.get(pk=held[1].pk).reversed_at is None


def test_an_iam_admin_is_not_offered_a_lift_of_their_own_workload(client, reviewer, admin_user):
    own = ClassifiedWorkloadFactory(owner=admin_user, slug="admins-own")
    services.containment_apply(
        finding=_finding(own), action="gate_sessions", by=reviewer, reason="Drift"
    )
    client.force_login(admin_user)
    page = client.get(reverse("workloads:detail", args=[own.slug])).content.decode()
    assert "Each session needs an approval" in page
    assert "Lift the gate" not in page


def test_an_iam_admin_is_not_offered_a_reversal_on_their_own_workload(client, reviewer, admin_user):
    own = ClassifiedWorkloadFactory(owner=admin_user, slug="admins-own-2")
    gate = services.containment_apply(
        finding=_finding(own), action="gate_sessions", by=reviewer, reason="Drift"
    )
    client.force_login(admin_user)
    page = client.get(reverse("findings:detail", args=[gate.finding_id])).content.decode()
    assert "Required an approval for each session" in page
    assert f'id="reverse-{gate.pk}"' not in page


def test_sessions_waiting_for_their_fold_do_not_fill_the_batch(workload, gated, settings):
    from governance.evaluation.services import unnamed_sessions_check
    from workloads.models import SessionTrace

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    window = workload.tier.max_session_seconds + settings.MANDATE_EVENT_MAX_LATENESS_SECONDS
    now = timezone.now()
    named = _session(workload, "conv-1")
    for n in range(3):  # heard of first; their naming span came, the fold not yet run
        _otlp_session(workload, f"{n:032x}", now - timedelta(seconds=1))
        SessionTrace.objects.create(
            workload=workload, trace_id=f"{n:032x}", session=named, fold_pending=True
        )
    due = _otlp_session(workload, "ab" * 16, now)
    _evaluate_calls(due, 1)
    with time_machine.travel(now + timedelta(seconds=window + 5)):
        assert unnamed_sessions_check(limit=2) == 1
    assert Finding.objects.filter(session=due, kind="unapproved_session_use").exists()


def test_a_window_the_workload_no_longer_has_does_not_hold_the_check_back(
    workload, gated, admin_user, settings
):
    """Its window cut long ago, an unnamed session is due by the window it ran under."""
    from governance.evaluation.services import unnamed_sessions_check
    from workloads.services import session_policy_update

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    Workload.objects.filter(pk=workload.pk).update(created_at=timezone.now() - timedelta(days=30))
    short = workload.tier.max_session_seconds // 6
    session_policy_update(workload=workload, by=admin_user, max_session_seconds=short)
    cut = workload.session_limits_changes.latest("id")
    cut.effective_from = timezone.now() - timedelta(days=20)
    cut.save(update_fields=["effective_from"])
    now = timezone.now()
    orphan = _otlp_session(workload, "ab" * 16, now)
    _evaluate_calls(orphan, 1)
    deadline = short + settings.MANDATE_EVENT_MAX_LATENESS_SECONDS
    with time_machine.travel(now + timedelta(seconds=deadline + 5)):
        assert unnamed_sessions_check() == 1


def test_no_period_past_its_deadline_reads_no_session(workload, gated, settings, monkeypatch):
    """The candidates' filter is a union of ranges: with none, nothing is read (an empty
    filter would read every session)."""
    from django.db.models import Q

    from governance.evaluation import services as evaluation
    from workloads.models import Session as SessionModel

    settings.MANDATE_SESSION_GATE_GRACE_SECONDS = 0
    long_ago = timezone.now() - timedelta(days=1)
    _otlp_session(workload, "ab" * 16, long_ago)
    monkeypatch.setattr(evaluation, "_past_naming_deadline", lambda *args: Q())
    assert evaluation.unnamed_sessions_check() == 0
    assert not SessionModel.objects.filter(evaluation_state__has_key="name_waited").exists()
