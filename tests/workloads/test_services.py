from datetime import timedelta

import pytest

from governance.errors import Conflict, DomainError, NotAllowed, RuleViolation
from governance.models import AuditEvent
from governance.policy_version import policy_version_current
from tests.factories import ClassifiedWorkloadFactory, WorkloadFactory, tier
from workloads import services
from workloads.models import Tool, Workload

pytestmark = pytest.mark.django_db


def test_it_registers_a_draft_workload_and_audits_it(owner):
    version = policy_version_current()
    workload = services.workload_register(
        by=owner,
        slug="ticket-triage",
        name="Ticket triage",
        purpose="Triage tickets",
        owner=owner,
        model_family="o1",
        environment="production",
    )
    assert workload.status == Workload.Status.DRAFT
    assert AuditEvent.objects.filter(
        action="workload.register", object_id=str(workload.pk)
    ).exists()
    assert policy_version_current() == version + 1


def test_it_refuses_to_activate_an_unclassified_workload(admin_user):
    workload = WorkloadFactory()
    with pytest.raises(Conflict):
        services.workload_set_status(workload=workload, status="active", by=admin_user)


def test_classification_needs_a_rationale(admin_user):
    workload = WorkloadFactory()
    with pytest.raises(DomainError):
        services.workload_classify(workload=workload, tier=tier(), by=admin_user, rationale=" ")


def test_a_move_to_a_tier_with_shorter_grants_shortens_those_that_would_outlast_it(
    admin_user,
):
    from django.utils import timezone

    from tests.factories import EntitlementFactory

    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    strict = tier("boundary-crossing")
    now = timezone.now()
    longest = timedelta(days=strict.max_grant_days)
    long = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=now + longest * 3,
    )
    short = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="file-read"),
        valid_until=now + timedelta(days=1),
    )
    version = policy_version_current()
    services.workload_classify(
        workload=workload, tier=strict, by=admin_user, rationale="Now sends email."
    )
    long.refresh_from_db()
    short.refresh_from_db()
    assert now + longest <= long.valid_until <= timezone.now() + longest
    assert short.valid_until - now == timedelta(days=1)  # within the tier already
    (shortened,) = AuditEvent.objects.filter(action="grant.shortened")
    assert shortened.object_id == str(long.pk) and shortened.actor == admin_user
    assert "at most" in shortened.after["reason"]
    assert policy_version_current() > version


def test_a_session_limit_cannot_exceed_the_tier_default(admin_user):
    workload = ClassifiedWorkloadFactory()
    ceiling = workload.tier.max_session_seconds
    with pytest.raises(DomainError) as excinfo:
        services.session_policy_update(
            workload=workload, by=admin_user, max_session_seconds=ceiling + 1
        )
    assert excinfo.value.field == "max_session_seconds"
    policy = services.session_policy_update(
        workload=workload, by=admin_user, max_session_seconds=ceiling - 1
    )
    assert policy.effective()["max_session_seconds"] == ceiling - 1


def test_a_direct_grant_completing_the_trifecta_needs_an_exception(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    services.entitlement_grant(
        reason="Needed for the test.",
        workload=workload,
        tool=Tool.objects.get(slug="file-read"),
        by=admin_user,
    )
    services.entitlement_grant(
        reason="Needed for the test.",
        workload=workload,
        tool=Tool.objects.get(slug="web-search"),
        by=admin_user,
    )
    with pytest.raises(RuleViolation) as excinfo:
        services.entitlement_grant(
            reason="Needed for the test.",
            workload=workload,
            tool=Tool.objects.get(slug="code-exec"),
            by=admin_user,
        )
    assert excinfo.value.detail["rule"] == "lethal-trifecta"


def test_a_direct_grant_with_no_end_lasts_the_tiers_longest_grant(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    grant = services.entitlement_grant(
        reason="Needed for the test.",
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        by=admin_user,
    )
    assert grant.valid_until - grant.valid_from == timedelta(days=workload.tier.max_grant_days)


def test_a_tier_that_requires_an_end_refuses_a_direct_grant_without_one(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    with pytest.raises(DomainError) as refused:
        services.entitlement_grant(
            reason="Needed for the test.",
            workload=workload,
            tool=Tool.objects.get(slug="crm-api"),
            by=admin_user,
        )
    assert refused.value.code == "end_required"


def test_nobody_grants_their_own_workload_a_tool_directly(admin_user):
    workload = ClassifiedWorkloadFactory(owner=admin_user)
    with pytest.raises(NotAllowed) as excinfo:
        services.entitlement_grant(
            reason="Needed for the test.",
            workload=workload,
            tool=Tool.objects.get(slug="web-search"),
            by=admin_user,
        )
    assert excinfo.value.code == "own_workload"
    assert not workload.entitlements.exists()


def test_retiring_even_a_draft_needs_a_reason(admin_user):
    workload = WorkloadFactory()
    with pytest.raises(DomainError) as excinfo:
        services.workload_set_status(workload=workload, status="retired", by=admin_user)
    assert excinfo.value.field == "reason"
    services.workload_set_status(workload=workload, status="retired", by=admin_user, reason="Dup")
    workload.refresh_from_db()
    assert workload.status == Workload.Status.RETIRED


def test_nobody_reinstates_their_own_suspended_workload(admin_user):
    workload = ClassifiedWorkloadFactory(owner=admin_user, status=Workload.Status.SUSPENDED)
    with pytest.raises(NotAllowed) as excinfo:
        services.workload_set_status(
            workload=workload, status="active", by=admin_user, reason="Mine"
        )
    assert excinfo.value.code == "own_workload"
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    # Suspending one's own workload tightens access, and stays open to its owner.
    live = ClassifiedWorkloadFactory(owner=admin_user)
    services.workload_set_status(workload=live, status="suspended", by=admin_user, reason="Stop")


def _limits_history(workload) -> list[dict]:
    return [
        change.limits for change in workload.session_limits_changes.order_by("effective_from", "id")
    ]


def test_a_session_policy_edit_keeps_the_limits_it_replaces(admin_user):
    """Evaluation judges a session by the limits of its time: the first edit records what
    held until then (from the workload's registration) and what holds from now."""
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    calls = workload.tier.max_tool_calls
    services.session_policy_update(workload=workload, by=admin_user, max_tool_calls=calls - 10)
    services.session_policy_update(workload=workload, by=admin_user, max_tool_calls=calls - 20)
    services.session_policy_update(workload=workload, by=admin_user, logging_level="full_trace")
    history = _limits_history(workload)
    assert [limits["max_tool_calls"] for limits in history] == [calls, calls - 10, calls - 20]


def test_reclassification_records_the_new_tiers_limits(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    services.workload_classify(
        workload=workload, tier=tier("internal-read"), by=admin_user, rationale="reads only"
    )
    assert [limits["max_session_seconds"] for limits in _limits_history(workload)] == [
        tier("internal-act").max_session_seconds,
        tier("internal-read").max_session_seconds,
    ]


def test_a_first_classification_follows_a_time_without_limits(admin_user):
    workload = WorkloadFactory()
    services.workload_classify(
        workload=workload, tier=tier("internal-read"), by=admin_user, rationale="reads only"
    )
    unclassified, classified = _limits_history(workload)
    assert set(unclassified.values()) == {None}
    assert classified["max_tool_calls"] == tier("internal-read").max_tool_calls


def test_the_history_rebuilt_from_the_audit_trail_is_the_one_the_services_record(admin_user, owner):
    """Migration 0018 gives workloads older than the history what the services would have
    recorded: registration, classification, edits, a move that drops an override."""
    from importlib import import_module

    from django.apps import apps

    from workloads.models import SessionLimitsChange

    workload = services.workload_register(
        by=owner,
        slug="history",
        name="History",
        purpose="Answers questions.",
        owner=owner,
        model_family="o1",
        environment="production",
    )
    services.workload_classify(
        workload=workload, tier=tier("internal-act"), by=admin_user, rationale="acts"
    )
    services.session_policy_update(workload=workload, by=admin_user, max_tool_calls=80)
    services.session_policy_update(workload=workload, by=admin_user, idle_timeout_seconds=60)
    services.workload_classify(  # drops the override of 80 calls, above this tier's 50
        workload=workload, tier=tier("internal-read"), by=admin_user, rationale="reads"
    )
    recorded = _limits_history(workload)
    assert [limits["max_tool_calls"] for limits in recorded] == [None, 100, 80, 80, 50]

    SessionLimitsChange.objects.all().delete()
    migration = import_module("workloads.migrations.0018_session_limits_history_from_audit")
    migration.rebuild(apps, None)
    assert _limits_history(workload) == recorded


def test_an_override_may_not_log_less_or_keep_less_than_the_tier(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))  # full traces, 365 days
    for field, value in (("logging_level", "metadata"), ("retention_days", 30)):
        with pytest.raises(DomainError) as refused:
            services.session_policy_update(workload=workload, by=admin_user, **{field: value})
        assert (refused.value.field, refused.value.code) == (field, "below_tier")
    policy = services.session_policy_update(
        workload=workload, by=admin_user, logging_level="full_trace", retention_days=400
    )
    assert policy.effective()["retention_days"] == 400


def test_only_the_limits_a_window_raises_point_to_one(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    for field, window in (("max_tool_calls", True), ("idle_timeout_seconds", False)):
        with pytest.raises(DomainError) as refused:
            services.session_policy_update(
                workload=workload, by=admin_user, **{field: getattr(workload.tier, field) + 1}
            )
        assert ("session window" in refused.value.message) is window


def test_an_idle_timeout_past_the_session_itself_is_refused(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    with pytest.raises(DomainError) as refused:
        services.session_policy_update(
            workload=workload, by=admin_user, max_session_seconds=100, idle_timeout_seconds=200
        )
    assert refused.value.field == "idle_timeout_seconds"
    assert refused.value.code == "idle_past_session"


def test_a_move_that_drops_overrides_says_so_in_the_audit(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    services.session_policy_update(
        workload=workload, by=admin_user, max_tool_calls=40, retention_days=120
    )
    services.workload_classify(
        workload=workload, tier=tier("boundary-crossing"), by=admin_user, rationale="Web."
    )
    dropped = AuditEvent.objects.filter(action="session_policy.update").latest("id")
    assert dropped.before["retention_days"] == 120 and dropped.after["retention_days"] is None
    assert dropped.after["max_tool_calls"] == 40  # boundary-crossing allows 200
    assert "does not allow" in dropped.after["reason"]
    classified = AuditEvent.objects.get(action="workload.classify")
    assert classified.id < dropped.id


def test_a_grant_without_a_request_says_why(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    tool = Tool.objects.get(slug="crm-api")
    with pytest.raises(DomainError) as refused:
        services.entitlement_grant(workload=workload, tool=tool, by=admin_user, reason=" ")
    assert (refused.value.field, refused.value.code) == ("reason", "required")
    assert not workload.entitlements.exists()


def test_saving_the_same_classification_again_records_nothing(admin_user):
    workload = WorkloadFactory()
    for _ in range(2):
        services.workload_classify(
            workload=workload, tier=tier("internal-read"), by=admin_user, rationale="Reads."
        )
    assert AuditEvent.objects.filter(action="workload.classify").count() == 1
    services.workload_classify(
        workload=workload, tier=tier("internal-read"), by=admin_user, rationale="Reads tickets."
    )
    assert AuditEvent.objects.filter(action="workload.classify").count() == 2
