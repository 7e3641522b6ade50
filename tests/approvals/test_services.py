from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.approvals import services
from governance.approvals.impact import approval_steps_required
from governance.errors import Conflict, DomainError, NotAllowed, RuleViolation
from governance.models import AccessRequest, ApprovalDecision, AuditEvent
from governance.policy_version import policy_version_current
from governance.roles import APPROVER
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, WorkloadFactory, tier
from workloads import services as catalogue
from workloads.models import CombinationRule, Entitlement, RuleException, SessionExtension, Tool
from workloads.selectors import effective_session_limits
from workloads.services import active_tools_of

from .conftest import user_with

pytestmark = pytest.mark.django_db

TRIFECTA = ["web-search", "file-read", "code-exec"]


def tools(*slugs):
    return list(Tool.objects.filter(slug__in=slugs))


def file_request(workload, by, slugs=("crm-api",), **kwargs):
    kwargs.setdefault("justification", "Needed for the quarterly review.")
    kwargs.setdefault("duration_days", 10)
    return services.access_request_create(by=by, workload=workload, tools=tools(*slugs), **kwargs)


def audited(action, obj=None):
    qs = AuditEvent.objects.filter(action=action)
    if obj is not None:
        qs = qs.filter(object_id=str(obj.pk))
    return qs.count()


def forbid_crm_with_email():
    return CombinationRule.objects.create(
        slug="no-crm-mail",
        name="No CRM mail-out",
        groups=[["tool:crm-api"], ["tool:send-email"]],
        scope="static",
        effect="forbid",
    )


# --- filing ---------------------------------------------------------------------------


def test_an_internal_read_request_needs_one_approval(read_workload, owner, approver):
    req = file_request(read_workload, owner)
    assert req.status == "pending"
    assert [s.kind for s in req.steps.all()] == ["approval"]
    assert audited("request.create", req) == 1


def test_a_trifecta_request_needs_the_tier_approvals_plus_an_iam_admin_exception(
    boundary_workload, owner
):
    req = file_request(boundary_workload, owner, TRIFECTA)
    steps = list(req.steps.order_by("position"))
    assert [s.kind for s in steps] == ["approval", "approval", "exception"]
    assert steps[2].rules == ["lethal-trifecta"]
    assert req.impact["exceptions_needed"][0]["slug"] == "lethal-trifecta"


def test_only_the_workloads_owner_may_request(read_workload, admin_user, approver):
    with pytest.raises(NotAllowed):
        file_request(read_workload, admin_user)
    with pytest.raises(NotAllowed):
        file_request(read_workload, approver)


def test_an_unclassified_workload_cannot_request(owner):
    with pytest.raises(Conflict):
        file_request(WorkloadFactory(owner=owner), owner)


def test_a_boundary_crossing_request_must_give_an_end(boundary_workload, owner):
    with pytest.raises(DomainError) as excinfo:
        file_request(boundary_workload, owner, duration_days=None)
    assert excinfo.value.code == "end_required"


def test_a_request_with_no_end_is_granted_the_tiers_longest_not_forever(
    read_workload, owner, approver
):
    req = file_request(read_workload, owner, duration_days=None)
    longest = read_workload.tier.max_grant_days
    assert req.duration_days == longest  # shown to the approver as what it is

    services.access_request_approve(access_request=req, by=approver)

    grant = Entitlement.objects.get(request=req)
    assert grant.valid_until - grant.valid_from == timedelta(days=longest)


def test_a_pending_request_filed_with_no_end_before_the_default_gets_the_longest(
    read_workload, owner, approver
):
    req = file_request(read_workload, owner)
    AccessRequest.objects.filter(pk=req.pk).update(duration_days=None)

    services.access_request_approve(access_request=req, by=approver)

    grant = Entitlement.objects.get(request=req)
    assert grant.valid_until - grant.valid_from == timedelta(days=read_workload.tier.max_grant_days)


def test_a_request_cannot_outlast_the_tiers_longest_grant(boundary_workload, owner):
    with pytest.raises(DomainError) as excinfo:
        file_request(boundary_workload, owner, duration_days=31)
    assert excinfo.value.code == "too_long"
    with pytest.raises(DomainError):
        file_request(
            boundary_workload,
            owner,
            duration_days=None,
            valid_until=timezone.now() + timedelta(days=31),
        )


def test_a_forbidden_combination_is_refused_at_filing_and_audited(read_workload, owner, admin_user):
    forbid_crm_with_email()
    with pytest.raises(RuleViolation) as excinfo:
        file_request(read_workload, owner, ("crm-api", "send-email"))
    assert excinfo.value.detail["rule"] == "no-crm-mail"
    assert not AccessRequest.objects.exists()
    assert audited("request.blocked") == 1


def test_approvers_are_emailed_after_commit_when_a_request_is_filed(
    read_workload, owner, approver, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        req = file_request(read_workload, owner, ("crm-api",))
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    recipients = sorted(m.to[0] for m in mail.outbox)
    assert recipients == [admin_user.email, approver.email]
    message = mail.outbox[0]
    assert f"Request #{req.pk}" in message.subject
    assert "crm-api" in message.body and "reader" in message.body
    assert "Needed for the quarterly review." in message.body
    assert owner.email not in recipients


# --- approving --------------------------------------------------------------------------


def test_the_last_approval_grants_the_tools_and_tells_the_requester(
    read_workload, owner, approver, django_capture_on_commit_callbacks
):
    req = file_request(read_workload, owner, ("crm-api", "sql-query"))
    version = policy_version_current()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=req, by=approver, comment="Fine.")
    req.refresh_from_db()
    assert req.status == "approved" and req.decided_at is not None
    grants = Entitlement.objects.filter(request=req, status="active")
    assert sorted(g.tool.slug for g in grants) == ["crm-api", "sql-query"]
    assert all(g.valid_until is not None for g in grants)
    assert policy_version_current() > version
    assert audited("request.approve", req) == 1
    assert audited("grant.create") == 2
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "approved" in mail.outbox[0].subject
    assert "crm-api" in mail.outbox[0].body


def test_two_approval_tier_needs_two_distinct_approvers(
    boundary_workload, owner, approver, approver2
):
    req = file_request(boundary_workload, owner, ("crm-api",))
    services.access_request_approve(access_request=req, by=approver)
    req.refresh_from_db()
    assert req.status == "pending"
    with pytest.raises(Conflict) as excinfo:
        services.access_request_approve(access_request=req, by=approver)
    assert excinfo.value.code == "already_decided"
    services.access_request_approve(access_request=req, by=approver2)
    req.refresh_from_db()
    assert req.status == "approved"


def test_it_denies_self_approval_and_owner_approval(read_workload, owner, approver, admin_user):
    owner.groups.add(*approver.groups.all())  # even an owner who is also an approver
    req = file_request(read_workload, owner)
    with pytest.raises(NotAllowed) as excinfo:
        services.access_request_approve(access_request=req, by=owner)
    assert excinfo.value.code == "self_approval"
    # Ownership moves to someone else: the new owner may not approve either.
    read_workload.owner = approver
    read_workload.save()
    with pytest.raises(NotAllowed) as excinfo:
        services.access_request_approve(access_request=req, by=approver)
    assert excinfo.value.code == "owner_approval"
    assert audited("request.decision_refused", req) == 2
    assert not ApprovalDecision.objects.exists()


def test_a_user_without_the_approve_permission_cannot_decide(read_workload, owner, reviewer):
    req = file_request(read_workload, owner)
    with pytest.raises(NotAllowed):
        services.access_request_approve(access_request=req, by=reviewer)
    with pytest.raises(NotAllowed):
        services.access_request_deny(access_request=req, by=reviewer, comment="no")


def test_the_database_refuses_self_approval_and_double_decisions(read_workload, owner, approver):
    req = file_request(read_workload, owner)
    step = req.steps.get()
    base = dict(request=req, requester=owner, workload_owner=owner, verdict="approve")
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalDecision.objects.create(step=step, approver=owner, **base)
    ApprovalDecision.objects.create(step=step, approver=approver, **base)
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalDecision.objects.create(
            approver=approver, **{**base, "verdict": "deny"}
        )  # one decision per approver per request
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalDecision.objects.create(step=None, approver=approver, **base)


def test_an_approver_cannot_fill_the_exception_step(
    boundary_workload, owner, approver, approver2, admin_user
):
    req = file_request(boundary_workload, owner, TRIFECTA)
    services.access_request_approve(access_request=req, by=approver)
    services.access_request_approve(access_request=req, by=approver2)
    req.refresh_from_db()
    assert req.status == "pending"
    third = user_with("approver3", APPROVER)
    with pytest.raises(NotAllowed) as excinfo:
        services.access_request_approve(access_request=req, by=third)
    assert excinfo.value.code == "exception_needs_iam_admin"
    services.access_request_approve(access_request=req, by=admin_user, justification="Sandboxed.")
    req.refresh_from_db()
    assert req.status == "approved"


def test_the_exception_needs_an_iam_admins_written_justification_and_expires(
    boundary_workload, owner, approver, approver2, admin_user
):
    req = file_request(boundary_workload, owner, TRIFECTA, duration_days=14)
    services.access_request_approve(access_request=req, by=approver)
    with pytest.raises(DomainError) as excinfo:
        services.access_request_approve(access_request=req, by=admin_user, justification=" ")
    assert excinfo.value.field == "justification"
    services.access_request_approve(
        access_request=req, by=admin_user, justification="Sandboxed runner, own datasets."
    )
    req.refresh_from_db()
    assert req.status == "pending"  # the second tier approval is still open
    services.access_request_approve(access_request=req, by=approver2)
    req.refresh_from_db()
    assert req.status == "approved"
    exception = RuleException.objects.get(request=req)
    assert exception.rule.slug == "lethal-trifecta"
    assert exception.justification == "Sandboxed runner, own datasets."
    assert exception.approved_by == admin_user
    assert timedelta(days=13) < exception.valid_until - timezone.now() <= timedelta(days=14)
    assert sorted(active_tools_of(boundary_workload, timezone.now())) == sorted(TRIFECTA)
    assert audited("exception.create", exception) == 1


def test_a_forbid_rule_that_appears_after_filing_blocks_approval_with_the_rule_named(
    read_workload, owner, approver, admin_user
):
    req = file_request(read_workload, owner, ("crm-api",))
    forbid_crm_with_email()
    catalogue.entitlement_grant(
        reason="Needed for the test.",
        workload=read_workload,
        tool=Tool.objects.get(slug="send-email"),
        by=admin_user,
    )
    with pytest.raises(RuleViolation) as excinfo:
        services.access_request_approve(access_request=req, by=approver)
    assert excinfo.value.detail == {"rule": "no-crm-mail"}
    assert "No CRM mail-out" in excinfo.value.message
    req.refresh_from_db()
    assert req.status == "pending"
    assert audited("request.approval_blocked", req) == 1
    assert not ApprovalDecision.objects.exists()


def test_an_approval_past_the_deadline_is_refused_before_the_expiry_job_runs(
    read_workload, owner, approver
):
    req = file_request(read_workload, owner)
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    with pytest.raises(Conflict) as refused:
        services.access_request_approve(access_request=req, by=approver)

    assert refused.value.code == "request_expired"
    assert "file a new one" in refused.value.message
    req.refresh_from_db()
    assert req.status == "pending"
    assert not ApprovalDecision.objects.exists() and not Entitlement.objects.exists()
    assert audited("request.approval_blocked", req) == 1


@pytest.mark.parametrize("status", ["suspended", "retired"])
def test_nothing_is_approved_for_a_workload_suspended_or_retired_after_filing(
    read_workload, owner, approver, status
):
    req = file_request(read_workload, owner)
    type(read_workload).objects.filter(pk=read_workload.pk).update(status=status)

    with pytest.raises(Conflict) as refused:
        services.access_request_approve(access_request=req, by=approver)

    assert refused.value.code == "workload_not_active"
    assert status in refused.value.message
    req.refresh_from_db()
    assert req.status == "pending" and not Entitlement.objects.exists()
    assert audited("request.approval_blocked", req) == 1


def test_a_workload_reclassified_to_a_stricter_tier_needs_that_tiers_approvals(
    read_workload, owner, approver, approver2, admin_user
):
    req = file_request(read_workload, owner)
    assert req.steps.count() == 1
    catalogue.workload_classify(
        workload=read_workload,
        tier=tier("boundary-crossing"),
        by=admin_user,
        rationale="It browses the web now.",
    )

    services.access_request_approve(access_request=req, by=approver)

    req.refresh_from_db()
    assert req.status == "pending" and not Entitlement.objects.exists()
    assert [s.kind for s in req.steps.all()] == ["approval", "approval"]
    assert audited("request.steps_added", req) == 1
    services.access_request_approve(access_request=req, by=approver2)
    req.refresh_from_db()
    assert req.status == "approved"
    assert audited("request.steps_added", req) == 1  # topped up once, not on every approval


def test_a_reclassification_adds_the_missing_steps_to_pending_requests_at_once(
    read_workload, owner, admin_user
):
    """The queue shows what a request still needs from the moment the tier changes, not the
    filing-time count until the next approval tops it up."""
    req = file_request(read_workload, owner)
    catalogue.workload_classify(
        workload=read_workload,
        tier=tier("boundary-crossing"),
        by=admin_user,
        rationale="It browses the web now.",
    )
    assert [s.kind for s in req.steps.all()] == ["approval", "approval"]
    added = AuditEvent.objects.get(action="request.steps_added", object_id=str(req.pk))
    assert added.actor == admin_user and added.after["approvals_required"] == 2
    # Back to the laxer tier: steps are never taken away from what was asked.
    catalogue.workload_classify(
        workload=read_workload, tier=tier("internal-read"), by=admin_user, rationale="Reads."
    )
    assert req.steps.count() == 2


def test_a_request_longer_than_a_stricter_new_tier_allows_is_granted_that_tiers_longest(
    read_workload, owner, approver, approver2, admin_user
):
    """Filed with no duration on internal-read (180 days), then reclassified to a tier that
    grants at most 30: the approval grants 30, rather than leaving a request that can only
    be denied."""
    req = file_request(read_workload, owner, duration_days=None)
    catalogue.workload_classify(
        workload=read_workload, tier=tier("boundary-crossing"), by=admin_user, rationale="Web."
    )
    services.access_request_approve(access_request=req, by=approver)
    services.access_request_approve(access_request=req, by=approver2)
    req.refresh_from_db()
    assert req.status == "approved"
    grant = Entitlement.objects.get(workload=read_workload, status="active")
    longest = timedelta(days=tier("boundary-crossing").max_grant_days)
    assert grant.valid_until - grant.valid_from <= longest
    assert grant.valid_until - grant.valid_from > longest - timedelta(minutes=1)


def test_approval_replaces_a_grant_it_makes_redundant(read_workload, owner, approver):
    old = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    req = file_request(read_workload, owner, ("crm-api",))
    assert req.impact["redundant_grants"] == ["crm-api"]
    services.access_request_approve(access_request=req, by=approver)
    old.refresh_from_db()
    assert old.status == "revoked" and f"#{req.pk}" in old.revoke_reason
    assert Entitlement.objects.get(workload=read_workload, status="active").request == req


def file_double_window(workload, owner):
    """A request for twice the session window in force, for five days."""
    current = effective_session_limits(workload=workload, at=timezone.now())
    return services.access_request_create(
        by=owner,
        workload=workload,
        kind="session_window",
        justification="Month-end runs are long.",
        session_limits={"max_session_seconds": current["max_session_seconds"] * 2},
        duration_days=5,
    )


def test_a_session_window_request_creates_an_expiring_extension(read_workload, owner, approver):
    current = effective_session_limits(workload=read_workload, at=timezone.now())
    req = file_double_window(read_workload, owner)
    services.access_request_approve(access_request=req, by=approver)
    extension = SessionExtension.objects.get(request=req)
    assert extension.valid_until - timezone.now() <= timedelta(days=5)
    limits = effective_session_limits(workload=read_workload, at=timezone.now())
    assert limits["max_session_seconds"] == current["max_session_seconds"] * 2


def test_a_workload_that_lost_its_tier_is_granted_nothing(read_workload, owner, approver):
    req = file_double_window(read_workload, owner)
    # Only a workload that is not live may lack a tier (a check constraint); say it was reset.
    type(read_workload).objects.filter(pk=read_workload.pk).update(status="draft", tier=None)

    with pytest.raises(Conflict) as refused:
        services.access_request_approve(access_request=req, by=approver)

    assert refused.value.code == "unclassified"
    assert not SessionExtension.objects.filter(request=req).exists()


def test_a_session_window_must_ask_for_more_than_now(read_workload, owner):
    current = effective_session_limits(workload=read_workload, at=timezone.now())
    with pytest.raises(DomainError) as excinfo:
        services.access_request_create(
            by=owner,
            workload=read_workload,
            kind="session_window",
            justification="x",
            session_limits={"max_tool_calls": current["max_tool_calls"]},
        )
    assert excinfo.value.code == "not_more"


def _file_window(workload, owner, days=5, **limits):
    return services.access_request_create(
        by=owner,
        workload=workload,
        kind="session_window",
        justification="Month-end runs are long.",
        session_limits=limits,
        duration_days=days,
    )


def test_a_session_window_raises_a_limit_at_most_to_the_tiers_ceiling(read_workload, owner):
    ceiling = read_workload.tier.max_session_seconds * 10  # SESSION_WINDOW_MAX_FACTOR
    with pytest.raises(DomainError) as refused:
        _file_window(read_workload, owner, max_session_seconds=ceiling + 1)
    assert refused.value.code == "above_ceiling" and refused.value.field == "max_session_seconds"
    assert str(ceiling) in refused.value.message
    assert _file_window(read_workload, owner, max_session_seconds=ceiling).pk


def test_a_window_past_the_ceiling_of_the_workloads_new_tier_is_not_approved(
    read_workload, owner, approver, admin_user
):
    req = _file_window(read_workload, owner, max_session_seconds=5000)
    catalogue.workload_classify(
        workload=read_workload, tier=tier("generation-only"), by=admin_user, rationale="Writes."
    )
    with pytest.raises(DomainError) as refused:
        services.access_request_approve(access_request=req, by=approver)
    assert refused.value.code == "above_ceiling"
    assert isinstance(refused.value, Conflict)  # valid when filed: the tier moved since
    assert not SessionExtension.objects.filter(request=req).exists()


def test_a_move_to_a_stricter_tier_holds_the_windows_in_force_to_it(
    read_workload, owner, approver, admin_user
):
    """From the move on: the window's past stands, as evaluation judges sessions by it."""
    req = _file_window(read_workload, owner, days=150, max_session_seconds=5000)
    services.access_request_approve(access_request=req, by=approver)
    started = timezone.now() - timedelta(hours=1)
    SessionExtension.objects.filter(request=req).update(valid_from=started)
    catalogue.workload_classify(
        workload=read_workload, tier=tier("generation-only"), by=admin_user, rationale="Writes."
    )
    now = timezone.now()
    ceiling = tier("generation-only").max_session_seconds * 10
    assert effective_session_limits(workload=read_workload, at=now)["max_session_seconds"] == (
        ceiling
    )
    half_an_hour_ago = now - timedelta(minutes=30)
    past = effective_session_limits(workload=read_workload, at=half_an_hour_ago)
    assert past["max_session_seconds"] == 5000
    assert AuditEvent.objects.filter(action="extension.shortened").count() == 1

    catalogue.workload_classify(  # 30-day grants: the window ends within 30 days of the move
        workload=read_workload, tier=tier("boundary-crossing"), by=admin_user, rationale="Web."
    )
    latest = SessionExtension.objects.filter(request=req).order_by("-valid_until").first()
    assert latest.valid_until <= timezone.now() + timedelta(days=30)


# --- the state machine --------------------------------------------------------------------


def _close(req, how, owner, approver):
    if how == "approved":
        services.access_request_approve(access_request=req, by=approver)
    elif how == "denied":
        services.access_request_deny(access_request=req, by=approver, comment="Not needed.")
    elif how == "cancelled":
        services.access_request_cancel(access_request=req, by=owner, reason="Changed my mind.")
    elif how == "expired":
        AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now())
        assert services.access_requests_expire() == 1
    req.refresh_from_db()
    return req


@pytest.mark.parametrize("how", ["approved", "denied", "cancelled", "expired"])
def test_a_pending_request_moves_once_and_then_refuses_every_transition(
    how, read_workload, owner, approver, approver2
):
    req = _close(file_request(read_workload, owner), how, owner, approver)
    assert req.status == how and req.decided_at is not None
    with pytest.raises(Conflict):
        services.access_request_approve(access_request=req, by=approver2)
    with pytest.raises(Conflict):
        services.access_request_deny(access_request=req, by=approver2, comment="late")
    with pytest.raises(Conflict):
        services.access_request_cancel(access_request=req, by=owner)
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now())
    assert services.access_requests_expire() == 0
    req.refresh_from_db()
    assert req.status == how
    action = {"approved": "approve", "denied": "deny", "cancelled": "cancel", "expired": "expire"}
    assert audited(f"request.{action[how]}", req) == 1


def test_a_denial_keeps_its_reason_and_needs_one(read_workload, owner, approver):
    req = file_request(read_workload, owner)
    with pytest.raises(DomainError):
        services.access_request_deny(access_request=req, by=approver, comment=" ")
    services.access_request_deny(access_request=req, by=approver, comment="Use the read API.")
    req.refresh_from_db()
    assert req.status == "denied" and req.decision_reason == "Use the read API."
    assert audited("request.deny", req) == 1


def test_only_the_requester_or_owner_may_cancel(read_workload, owner, approver):
    req = file_request(read_workload, owner)
    with pytest.raises(NotAllowed):
        services.access_request_cancel(access_request=req, by=approver)


# --- jobs ---------------------------------------------------------------------------------


def test_approvers_are_reminded_once_before_a_request_expires(
    read_workload, owner, approver, django_capture_on_commit_callbacks
):
    req = file_request(read_workload, owner)
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now() + timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.access_requests_remind() == 1
        assert services.access_requests_remind() == 0
    reminder = [m for m in mail.outbox if "Reminder" in m.subject]
    assert reminder and approver.email in {m.to[0] for m in reminder}
    assert f"#{req.pk}" in reminder[0].body


def test_expired_requests_are_audited_and_the_requester_told(
    read_workload, owner, django_capture_on_commit_callbacks
):
    req = file_request(read_workload, owner)
    AccessRequest.objects.filter(pk=req.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.access_requests_expire() == 1
    assert audited("request.expire", req) == 1
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "expired" in mail.outbox[0].subject


def test_an_expired_grant_reads_as_expired_before_and_after_the_job(read_workload):
    grant = EntitlementFactory(
        workload=read_workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_from=timezone.now() - timedelta(days=2),
        valid_until=timezone.now() - timedelta(seconds=1),
    )
    assert grant.status == "active"
    assert grant.effective_status == "expired"
    assert "crm-api" not in active_tools_of(read_workload, timezone.now())
    version = policy_version_current()
    assert services.grants_expire() == 1
    assert services.grants_expire() == 0
    grant.refresh_from_db()
    assert grant.status == "expired"
    assert audited("grant.expire", grant) == 1
    assert policy_version_current() == version + 1


def test_an_exception_expires_and_the_rule_needs_one_again(boundary_workload, owner, admin_user):
    rule = CombinationRule.objects.get(slug="lethal-trifecta")
    exception = RuleException.objects.create(
        workload=boundary_workload,
        rule=rule,
        justification="Pilot.",
        valid_from=timezone.now() - timedelta(days=3),
        valid_until=timezone.now() + timedelta(days=1),
    )
    req = file_request(boundary_workload, owner, TRIFECTA)
    assert [h["slug"] for h in req.impact["exceptions_in_force"]] == ["lethal-trifecta"]
    assert "exception" not in [s.kind for s in req.steps.all()]
    RuleException.objects.filter(pk=exception.pk).update(valid_until=timezone.now())
    assert services.grants_expire() == 1
    exception.refresh_from_db()
    assert exception.status == "expired"
    services.access_request_cancel(access_request=req, by=owner)  # else the same is pending
    again = file_request(boundary_workload, owner, TRIFECTA)
    assert [s.kind for s in again.steps.all()][-1] == "exception"


def test_owners_are_warned_once_before_a_grant_expires(
    read_workload, owner, django_capture_on_commit_callbacks
):
    grant = EntitlementFactory(
        workload=read_workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=timezone.now() + timedelta(days=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_warn_expiring() == 1
        assert services.grants_warn_expiring() == 0
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "crm-api" in mail.outbox[0].subject and "reader" in mail.outbox[0].subject
    grant.refresh_from_db()
    assert grant.expiry_notified_at is not None


# --- pure step computation ------------------------------------------------------------


def test_open_high_findings_add_one_approval_step():
    plain = approval_steps_required(approvals_required=2)
    flagged = approval_steps_required(approvals_required=2, has_open_high_findings=True)
    assert len(flagged) == len(plain) + 1
    with_exception = approval_steps_required(
        approvals_required=1, exception_rules=[("lethal-trifecta", "Lethal trifecta")]
    )
    assert [s.kind for s in with_exception] == ["approval", "exception"]
    assert with_exception[1].rules == ("lethal-trifecta",)


def test_tier_gates_come_from_the_tier(owner):
    act = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-act"))
    req = file_request(act, owner)
    assert req.steps.count() == act.tier.approvals_required == 2


def test_a_window_past_its_end_not_yet_marked_is_left_alone_by_a_move(
    read_workload, owner, approver, admin_user
):
    req = _file_window(read_workload, owner, max_session_seconds=5000)
    services.access_request_approve(access_request=req, by=approver)
    now = timezone.now()
    SessionExtension.objects.filter(request=req).update(
        valid_from=now - timedelta(hours=2), valid_until=now - timedelta(minutes=2)
    )
    catalogue.workload_classify(
        workload=read_workload, tier=tier("generation-only"), by=admin_user, rationale="Writes."
    )
    (window,) = SessionExtension.objects.filter(request=req)
    assert window.valid_until < now and window.max_session_seconds == 5000


# --- an identical pending request is a conflict --------------------------------------------


def test_filing_what_a_pending_request_already_asks_for_is_a_conflict_naming_it(
    read_workload, owner
):
    first = file_request(read_workload, owner, ["crm-api", "web-search"])
    with pytest.raises(Conflict) as caught:
        # The same tool set in another order, with another reason and length, is the same ask.
        file_request(
            read_workload,
            owner,
            ["web-search", "crm-api"],
            justification="Asking again.",
            duration_days=3,
        )
    assert caught.value.code == "already_pending"
    assert caught.value.detail == {"request": first.pk}
    assert f"#{first.pk}" in caught.value.message
    assert AccessRequest.objects.count() == 1


def test_a_different_tool_set_another_workload_or_a_closed_request_is_not_identical(
    read_workload, owner
):
    first = file_request(read_workload, owner, ["crm-api", "web-search"])
    file_request(read_workload, owner, ["crm-api"])  # a subset
    file_request(read_workload, owner, ["crm-api", "web-search", "file-read"])  # a superset
    other = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-read"))
    file_request(other, owner, ["crm-api", "web-search"])
    services.access_request_cancel(access_request=first, by=owner)
    file_request(read_workload, owner, ["crm-api", "web-search"])
    assert AccessRequest.objects.filter(status="pending").count() == 4


def test_a_pending_request_past_its_expiry_does_not_block_a_new_one(read_workload, owner):
    first = file_request(read_workload, owner)
    AccessRequest.objects.filter(pk=first.pk).update(expires_at=timezone.now())
    assert file_request(read_workload, owner).pk != first.pk


def test_a_session_window_is_identical_when_it_asks_for_the_same_limits(read_workload, owner):
    def window(**limits):
        return services.access_request_create(
            by=owner,
            workload=read_workload,
            kind="session_window",
            justification="Longer runs.",
            session_limits=limits,
        )

    first = window(max_tool_calls=400)
    with pytest.raises(Conflict) as caught:
        window(max_tool_calls=400)
    assert caught.value.detail == {"request": first.pk}
    window(max_tool_calls=450)
    window(max_tool_calls=400, max_session_seconds=1200)
    assert AccessRequest.objects.count() == 3
