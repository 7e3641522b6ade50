"""Triage, containment and its reversal."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.errors import Conflict, DomainError, NotAllowed
from governance.evaluation.services import events_evaluate
from governance.findings import services
from governance.findings.selectors import workload_has_open_high_findings
from governance.models import AuditEvent, ContainmentAction, Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, tier
from workloads.models import Entitlement, Tool, Workload

pytestmark = pytest.mark.django_db


def _finding(workload, tool="send-email"):
    session = make_session(workload)
    events_evaluate(**id_range(add_events(session, ("tool_call", 1, {"tool": tool}))))
    return Finding.objects.get(session=session)


@pytest.fixture
def finding():
    return _finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))


def test_a_reviewer_acknowledges_then_resolves_with_an_audit_trail(finding, reviewer):
    services.finding_set_status(finding=finding, status="acknowledged", by=reviewer)
    services.finding_set_status(finding=finding, status="resolved", by=reviewer, comment="Fixed")
    finding.refresh_from_db()
    assert finding.status == "resolved"
    assert finding.resolved_at is not None
    assert finding.comments.get().body == "Fixed"
    assert list(
        AuditEvent.objects.filter(object_id=str(finding.pk))
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["finding.acknowledged", "finding.resolved"]


def test_a_resolved_finding_cannot_be_acknowledged(finding, reviewer):
    services.finding_set_status(finding=finding, status="false_positive", by=reviewer)
    with pytest.raises(Conflict):
        services.finding_set_status(finding=finding, status="acknowledged", by=reviewer)


def test_an_auditor_may_look_but_not_triage(finding, auditor):
    with pytest.raises(NotAllowed):
        services.finding_set_status(finding=finding, status="acknowledged", by=auditor)


def test_bulk_triage_moves_only_the_findings_that_can_move(reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    first, second = _finding(workload), _finding(workload, tool="code-exec")
    services.finding_set_status(finding=second, status="resolved", by=reviewer)
    result = services.findings_bulk_set_status(
        finding_ids=[first.pk, second.pk], status="acknowledged", by=reviewer
    )
    assert result.changed == [first.pk]
    assert result.skipped == {"resolved": [second.pk]}


def _status_events(finding):
    return list(
        AuditEvent.objects.filter(object_id=str(finding.pk), action__startswith="finding.")
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_a_move_from_a_stale_page_is_refused_naming_who_moved_it(finding, reviewer, admin_user):
    services.finding_set_status(finding=finding, status="acknowledged", by=admin_user)
    with pytest.raises(Conflict) as refused:
        services.finding_set_status(
            finding=finding,
            status="acknowledged",
            seen_status="open",
            comment="Looked at it",
            by=reviewer,
        )
    assert refused.value.code == "changed_meanwhile"
    assert refused.value.message.startswith("admin marked this finding acknowledged at ")
    assert "Nothing was changed." in refused.value.message
    # A move still allowed from the new status is refused too: it was decided on a stale page.
    with pytest.raises(Conflict, match="admin marked this finding acknowledged"):
        services.finding_set_status(
            finding=finding, status="resolved", seen_status="open", by=reviewer
        )
    finding.refresh_from_db()
    assert finding.status == "acknowledged"
    assert not finding.comments.exists()
    assert _status_events(finding) == ["finding.acknowledged"]


def test_a_move_to_the_status_the_page_shows_is_refused_not_claimed(finding, reviewer):
    with pytest.raises(Conflict, match=r"^This finding is open already\. Nothing was changed\.$"):
        services.finding_set_status(
            finding=finding, status="open", seen_status="open", comment="hm", by=reviewer
        )
    assert not finding.comments.exists() and _status_events(finding) == []


def test_the_api_asking_for_the_status_it_has_keeps_the_comment(finding, reviewer):
    services.finding_set_status(finding=finding, status="open", comment="Still open", by=reviewer)
    finding.refresh_from_db()
    assert finding.status == "open"
    assert finding.comments.get().body == "Still open"
    assert _status_events(finding) == ["finding.comment"]


def test_a_refused_move_names_both_statuses_by_their_labels(finding, reviewer):
    services.finding_set_status(finding=finding, status="resolved", by=reviewer)
    with pytest.raises(Conflict) as refused:
        services.finding_set_status(
            finding=finding, status="false_positive", seen_status="resolved", by=reviewer
        )
    assert refused.value.message == (
        "This finding is resolved: it cannot be marked false positive. Reopen it first."
    )


def test_a_status_comment_is_capped_like_any_comment(finding, reviewer):
    with pytest.raises(DomainError) as refused:
        services.finding_set_status(
            finding=finding, status="acknowledged", comment="x" * 5001, by=reviewer
        )
    assert refused.value.field == "comment"
    finding.refresh_from_db()
    assert finding.status == "open" and _status_events(finding) == []


def test_an_overlong_comment_or_reason_is_refused_not_cut_short(finding, reviewer):
    with pytest.raises(DomainError) as refused:
        services.finding_comment_add(finding=finding, body="x" * 5001, by=reviewer)
    assert refused.value.field == "body" and not finding.comments.exists()
    with pytest.raises(DomainError) as refused:
        services.containment_apply(
            finding=finding, action="suspend_workload", by=reviewer, reason="y" * 501
        )
    assert refused.value.field == "reason" and not ContainmentAction.objects.exists()


def test_a_finding_is_assigned_only_to_someone_who_can_triage(finding, reviewer, auditor):
    services.finding_assign(finding=finding, assignee=reviewer, by=reviewer)
    assert Finding.objects.get(pk=finding.pk).assignee == reviewer
    with pytest.raises(Exception, match="triage"):
        services.finding_assign(finding=finding, assignee=auditor, by=reviewer)


def test_an_open_high_finding_marks_the_workload_until_resolved(reviewer):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    assert not workload_has_open_high_findings(workload)
    finding = _finding(workload)
    assert finding.severity == "high"
    assert workload_has_open_high_findings(workload)
    services.finding_set_status(finding=finding, status="resolved", by=reviewer)
    assert not workload_has_open_high_findings(workload)


def _critical_containment(workload):
    # Boundary-crossing tiers suspend and revoke on critical findings; the forbid rule
    # below makes the combination critical.
    from workloads.models import CombinationRule

    CombinationRule.objects.filter(slug="lethal-trifecta").update(effect="forbid", scope="dynamic")
    for slug in ("sql-query", "web-search", "send-email"):
        EntitlementFactory(
            workload=workload,
            tool=Tool.objects.get(slug=slug),
            valid_until=timezone.now() + timedelta(days=10),
        )
    session = make_session(workload)
    events_evaluate(
        **id_range(
            add_events(
                session,
                ("tool_call", 1, {"tool": "sql-query"}),
                ("tool_call", 2, {"tool": "web-search"}),
                ("tool_call", 3, {"tool": "send-email"}),
            )
        )
    )
    return Finding.objects.get(kind="forbidden_combination")


def test_a_critical_finding_suspends_and_revokes_as_the_tier_says(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    finding = _critical_containment(workload)
    assert finding.severity == "critical"
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    assert not Entitlement.objects.filter(
        workload=workload, tool__slug="send-email", status="active"
    ).exists()
    actions = {a.action: a for a in ContainmentAction.objects.filter(finding=finding)}
    # The boundary tier also makes each session need an approval on a high or critical one.
    assert set(actions) == {"suspend_workload", "revoke_grant", "gate_sessions"}
    workload.refresh_from_db()
    assert workload.sessions_need_approval

    for action in actions.values():
        services.containment_reverse(action=action, by=admin_user, reason="A test run, agreed.")
    assert Entitlement.objects.filter(
        workload=workload, tool__slug="send-email", status="active"
    ).exists()
    # The run raised other critical findings, each holding the suspension too: the workload
    # is active again only once every one of them is reversed.
    others = ContainmentAction.objects.filter(
        workload=workload, action="suspend_workload", reversed_at__isnull=True
    )
    assert others.exists()
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    for action in others:
        services.containment_reverse(action=action, by=admin_user, reason="A test run, agreed.")
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE


def test_a_reversal_needs_a_reason_and_records_it_in_the_audit(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    finding = _critical_containment(workload)
    action = ContainmentAction.objects.get(finding=finding, action="suspend_workload")
    for other in ContainmentAction.objects.filter(action="suspend_workload").exclude(pk=action.pk):
        services.containment_reverse(action=other, by=admin_user, reason="Another finding")
    for blank in ("", "   "):
        with pytest.raises(DomainError) as excinfo:
            services.containment_reverse(action=action, by=admin_user, reason=blank)
        assert excinfo.value.field == "reason"
    action.refresh_from_db()
    assert action.reversed_at is None

    services.containment_reverse(action=action, by=admin_user, reason=" Owner ran a drill. ")
    event = AuditEvent.objects.filter(action="containment.reverse").latest("id")
    assert event.after["reason"] == "Owner ran a drill."
    reinstated = AuditEvent.objects.filter(action="workload.active").latest("id")
    assert reinstated.after["reason"].endswith(": Owner ran a drill.")


def test_nobody_reverses_the_containment_of_their_own_workload(admin_user):
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"), owner=admin_user)
    finding = _critical_containment(workload)
    for action in ContainmentAction.objects.filter(finding=finding):
        with pytest.raises(NotAllowed) as excinfo:
            services.containment_reverse(action=action, by=admin_user, reason="Mine.")
        assert excinfo.value.code == "own_workload"
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    assert not ContainmentAction.objects.filter(reversed_at__isnull=False).exists()


def test_a_reviewer_cannot_reverse_containment(reviewer):
    action = ContainmentAction(pk=1)
    with pytest.raises(NotAllowed):
        services.containment_reverse(action=action, by=reviewer, reason="Let it run.")


def test_a_middle_tier_without_containment_settings_contains_nothing():
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    finding = _finding(workload)
    finding.severity = "critical"
    assert services.finding_contain(finding=finding) == []


def test_merging_keeps_one_containment_action_of_a_kind():
    from tests.findings.api_rows import make_finding

    workload = ClassifiedWorkloadFactory()
    kept, duplicate = make_finding(workload), make_finding(workload)
    ContainmentAction.objects.create(finding=kept, action="suspend_workload", workload=workload)
    ContainmentAction.objects.create(
        finding=duplicate, action="suspend_workload", workload=workload
    )
    services.finding_merge(duplicate=duplicate, into=kept)
    assert list(kept.containment.values_list("action", flat=True)) == ["suspend_workload"]
    assert not Finding.objects.filter(pk=duplicate.pk).exists()


def test_merging_keeps_each_revocation_of_a_different_grant_so_each_can_be_restored(
    reviewer, admin_user
):
    """Two findings of one signal, each revoking the tool's grant of its time (granted again
    between them): the merged finding holds both records, so the grant revoked last can be
    restored; the same grant revoked by both is held once."""
    from tests.findings.api_rows import make_finding
    from workloads.services import entitlement_revoke

    workload = ClassifiedWorkloadFactory()
    tool = Tool.objects.get(slug="web-search")
    revoked = []
    for _ in range(2):  # granted, revoked, granted again, revoked again
        grant = EntitlementFactory(workload=workload, tool=tool)
        entitlement_revoke(grant=grant, by=None, reason="Contained", for_containment=True)
        revoked.append(grant)
    first, second = revoked
    kept = make_finding(workload, tool="web-search")
    duplicate = make_finding(workload, tool="web-search")
    for finding, grant in ((kept, first), (duplicate, second)):
        ContainmentAction.objects.create(
            finding=finding, action="revoke_grant", workload=workload, grant=grant
        )
    same = make_finding(workload, tool="web-search")
    ContainmentAction.objects.create(
        finding=same, action="revoke_grant", workload=workload, grant=first
    )
    services.finding_merge(duplicate=duplicate, into=kept)
    services.finding_merge(duplicate=same, into=kept)
    records = kept.containment.order_by("grant_id")
    assert [(r.action, r.grant_id) for r in records] == [
        ("revoke_grant", first.pk),
        ("revoke_grant", second.pk),
    ]
    services.containment_reverse(action=records[1], by=admin_user, reason="False alarm")
    assert Entitlement.objects.filter(workload=workload, tool=tool, status="active").count() == 1
    # The other record is reversed too, with the tool held already: nothing granted twice.
    reversal = services.containment_reverse(action=records[0], by=admin_user, reason="Same")
    assert reversal.already_held
    assert (
        AuditEvent.objects.filter(action="containment.reverse")
        .latest("id")
        .after["tool_held_already"]
    )
    assert not kept.containment.filter(reversed_at=None).exists()
    assert Entitlement.objects.filter(workload=workload, tool=tool, status="active").count() == 1


def test_a_restored_grant_ends_no_later_than_the_tier_now_allows(reviewer, admin_user):
    """Revoked by containment on a tier with long grants, restored after a move to a tier
    with short ones: as if granted today, like a shortened grant."""
    from tests.findings.api_rows import make_finding
    from workloads.services import entitlement_revoke, workload_classify

    workload = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    grant = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="web-search"),
        valid_until=timezone.now() + timedelta(days=80),
    )
    entitlement_revoke(grant=grant, by=None, reason="Contained", for_containment=True)
    record = ContainmentAction.objects.create(
        finding=make_finding(workload, tool="web-search"),
        action="revoke_grant",
        workload=workload,
        grant=grant,
    )
    strict = tier("boundary-crossing")
    workload_classify(workload=workload, tier=strict, by=admin_user, rationale="Sends email")
    services.containment_reverse(action=record, by=admin_user, reason="False alarm")
    restored = Entitlement.objects.get(workload=workload, status="active")
    assert restored.valid_until <= timezone.now() + timedelta(days=strict.max_grant_days)


def test_a_high_finding_on_a_gating_tier_makes_each_session_need_approval():
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import EntitlementFactory
    from workloads.models import Tool

    # Using a grant that has ended: medium, raised to high in the top tier (not critical).
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    ended = timezone.now() - timedelta(days=1)
    EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_from=ended - timedelta(days=1),
        valid_until=ended,
    )
    finding = _finding(workload, tool="crm-api")
    assert (finding.kind, finding.severity) == ("expired_grant_use", "high")
    (action,) = ContainmentAction.objects.filter(finding=finding)
    assert action.action == "gate_sessions" and action.created_by is None
    workload.refresh_from_db()
    assert workload.sessions_need_approval and workload.status == Workload.Status.ACTIVE
    gated = AuditEvent.objects.get(action="workload.sessions_gated")
    assert gated.actor is None and f"finding #{finding.pk}" in gated.after["reason"]
    # A tier that does not gate: a high finding changes nothing.
    quiet = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    other = _finding(quiet, tool="crm-api")
    assert other.severity == "high"
    assert not ContainmentAction.objects.filter(finding=other).exists()
    quiet.refresh_from_db()
    assert not quiet.sessions_need_approval


def test_the_page_says_when_a_reversed_revocation_granted_nothing(admin_user, client):
    """The tool was granted again after the revocation: reversing it restores nothing, and
    the finding page says so rather than 'reversed' alone."""
    from django.urls import reverse

    from tests.findings.api_rows import make_finding
    from workloads.services import entitlement_revoke

    workload = ClassifiedWorkloadFactory()
    tool = Tool.objects.get(slug="web-search")
    revoked = EntitlementFactory(workload=workload, tool=tool)
    entitlement_revoke(grant=revoked, by=None, reason="Contained", for_containment=True)
    EntitlementFactory(workload=workload, tool=tool)  # granted anew since
    record = ContainmentAction.objects.create(
        finding=make_finding(workload, tool="web-search"),
        action="revoke_grant",
        workload=workload,
        grant=revoked,
    )
    client.force_login(admin_user)
    response = client.post(
        reverse("findings:reverse_containment", args=[record.pk]),
        {"reason": "False alarm"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Containment reversed. The workload holds the tool again already, so nothing was granted."
    ]
    assert Entitlement.objects.filter(workload=workload, tool=tool, status="active").count() == 1
