"""Containment by hand: a reviewer suspends a finding's workload or revokes the grant it
names (tightening only), with a reason; an IAM admin can reverse it."""

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.errors import Conflict, DomainError, NotAllowed
from governance.findings import services
from governance.models import AuditEvent, ContainmentAction, Finding
from tests.evaluation.rows import make_session
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import Entitlement, Tool, Workload

pytestmark = pytest.mark.django_db


@pytest.fixture
def finding():
    workload = ClassifiedWorkloadFactory()
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="web-search"))
    return Finding.objects.create(
        kind="reasoning_loop",
        severity="high",
        workload=workload,
        session=make_session(workload),
        tool="web-search",
        summary="Called web-search 9 times with the same arguments.",
        dedupe_key="manual-containment",
        occurred_at=timezone.now(),
    )


def test_a_reviewer_suspends_the_workload_with_a_reason(finding, reviewer, admin_user):
    action = services.containment_apply(
        finding=finding, action="suspend_workload", by=reviewer, reason="Looping on prod"
    )
    finding.workload.refresh_from_db()
    assert finding.workload.status == Workload.Status.SUSPENDED
    assert action.created_by == reviewer
    applied = AuditEvent.objects.get(action="containment.apply")
    assert applied.actor == reviewer and applied.after["reason"] == "Looping on prod"
    suspended = AuditEvent.objects.get(action="workload.suspended")
    assert "Looping on prod" in suspended.after["reason"]
    with pytest.raises(Conflict):
        services.containment_apply(
            finding=finding, action="suspend_workload", by=reviewer, reason="again"
        )
    services.containment_reverse(action=action, by=admin_user, reason="Fixed the loop")
    finding.workload.refresh_from_db()
    assert finding.workload.status == Workload.Status.ACTIVE


def test_a_reviewer_revokes_the_grant_the_finding_names(finding, reviewer):
    services.containment_apply(
        finding=finding, action="revoke_grant", by=reviewer, reason="Abused search"
    )
    grant = Entitlement.objects.get(workload=finding.workload, tool__slug="web-search")
    assert grant.status == Entitlement.Status.REVOKED
    assert "Abused search" in grant.revoke_reason and reviewer.username in grant.revoke_reason
    revoked = AuditEvent.objects.get(action="grant.revoke", object_id=str(grant.pk))
    assert revoked.actor == reviewer  # the person, not the system
    assert ContainmentAction.objects.get(action="revoke_grant").grant == grant
    with pytest.raises(Conflict):  # nothing left to revoke
        services.containment_apply(
            finding=finding, action="revoke_grant", by=reviewer, reason="again"
        )


def test_containment_needs_a_reason_and_the_permission(finding, reviewer, approver):
    with pytest.raises(DomainError) as excinfo:
        services.containment_apply(
            finding=finding, action="suspend_workload", by=reviewer, reason=" "
        )
    assert excinfo.value.field == "reason"
    with pytest.raises(NotAllowed):
        services.containment_apply(
            finding=finding, action="suspend_workload", by=approver, reason="I may not"
        )
    finding.workload.refresh_from_db()
    assert finding.workload.status == Workload.Status.ACTIVE
    assert not ContainmentAction.objects.exists()


def test_the_finding_page_offers_what_is_left_to_do_and_contains(client, finding, reviewer):
    client.force_login(reviewer)
    url = reverse("findings:detail", args=[finding.pk])
    page = client.get(url)
    assert [value for value, _ in page.context["contain_options"]] == [
        "suspend_workload",
        "revoke_grant",
        "gate_sessions",
    ]
    assert 'id="contain-form"' in page.content.decode()
    response = client.post(
        reverse("findings:contain", args=[finding.pk]),
        {"action": "revoke_grant", "reason": "Abused search"},
    )
    assert response.status_code == 303
    page = client.get(url)
    assert [value for value, _ in page.context["contain_options"]] == [
        "suspend_workload",
        "gate_sessions",
    ]
    assert f"by {reviewer.username}" in page.content.decode()


def test_an_approver_sees_no_containment_form(client, finding, approver):
    client.force_login(approver)
    page = client.get(reverse("findings:detail", args=[finding.pk]))
    assert page.context["contain_options"] == []
    assert 'id="contain-form"' not in page.content.decode()


def test_a_finding_no_longer_open_cannot_be_contained_over(finding, reviewer):
    Finding.objects.filter(pk=finding.pk).update(status=Finding.Status.FALSE_POSITIVE)
    with pytest.raises(Conflict):
        services.containment_apply(
            finding=finding, action="revoke_grant", by=reviewer, reason="Too late"
        )
    assert Entitlement.objects.get(workload=finding.workload).status == Entitlement.Status.ACTIVE


def test_reversing_one_suspension_keeps_the_one_a_critical_finding_holds(
    finding, reviewer, admin_user
):
    from workloads.models import SensitivityTier

    workload = finding.workload
    SensitivityTier.objects.filter(pk=workload.tier_id).update(suspend_on_critical=True)
    manual = services.containment_apply(
        finding=finding, action="suspend_workload", by=reviewer, reason="Looping"
    )
    critical = Finding.objects.create(
        kind="forbidden_combination",
        severity="critical",
        workload=Workload.objects.select_related("tier").get(pk=workload.pk),
        session=finding.session,
        tool="web-search",
        summary="The trifecta in one session.",
        dedupe_key="critical-after-manual",
        occurred_at=timezone.now(),
    )
    [held] = [
        a for a in services.finding_contain(finding=critical) if a.action == "suspend_workload"
    ]

    services.containment_reverse(action=manual, by=admin_user, reason="The loop is fixed")
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED  # the critical finding still holds it
    event = AuditEvent.objects.get(action="containment.reverse")
    assert event.after["still_held_by_findings"] == [critical.pk]

    services.containment_reverse(action=held, by=admin_user, reason="Reviewed the session")
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE


def test_the_page_says_when_a_reversal_leaves_the_workload_suspended(
    client, finding, reviewer, admin_user
):
    from workloads.models import SensitivityTier

    workload = finding.workload
    SensitivityTier.objects.filter(pk=workload.tier_id).update(suspend_on_critical=True)
    manual = services.containment_apply(
        finding=finding, action="suspend_workload", by=reviewer, reason="Looping"
    )
    critical = Finding.objects.create(
        kind="forbidden_combination",
        severity="critical",
        workload=Workload.objects.select_related("tier").get(pk=workload.pk),
        session=finding.session,
        summary="The trifecta in one session.",
        dedupe_key="critical-held",
        occurred_at=timezone.now(),
    )
    services.finding_contain(finding=critical)
    client.force_login(admin_user)
    response = client.post(
        reverse("findings:reverse_containment", args=[manual.pk]),
        {"reason": "The loop is fixed"},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        "Reversed. But the workload stays suspended: the containment of finding "
        f"#{critical.pk} holds it too."
    ]
