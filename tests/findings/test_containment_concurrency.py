"""Containment under concurrency, on PostgreSQL with real row locks.

Reversing the last two records that hold one workload's gate at the same time: the workload
row lock makes the second reversal see the first, so the gate is lifted. (Without it each saw
the other's record still standing, and the gate stayed up with no record left to reverse.)
Approving a session run while the gate is lifted: one lock order, no deadlock. Evaluation
locking its workloads in id order, reading status under the lock, and taking grants before
the policy version; evaluation and a superseding approval taking workloads, grants and the
audit chain in that order; a session-run approval and the expiry of the session's earlier
approval taking that approval before the chain; a merge and a reviewer's containment taking
the findings first: each test pauses one side where the other would cut in, and fails (a
deadlock, a broken constraint or a wrong status) with the order undone."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from governance.findings import services
from governance.models import Finding
from tests.evaluation.rows import make_session
from tests.factories import ClassifiedWorkloadFactory
from workloads.models import Workload

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (set DATABASE_URL)")


def _together(*steps) -> list[Exception]:
    """Run each step in a thread of its own (its own database connection), wait for all,
    and return what they raised: a deadlock PostgreSQL broke shows up here."""
    errors: list[Exception] = []

    def run(step):
        try:
            step()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    connection.close()  # the test's own connection is not shared with the threads
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def _gate(workload, key, reviewer):
    finding = Finding.objects.create(
        kind="intent_drift",
        severity="medium",
        workload=workload,
        session=make_session(workload),
        summary="Drifted.",
        dedupe_key=key,
        occurred_at=timezone.now(),
    )
    return services.containment_apply(
        finding=finding, action="gate_sessions", by=reviewer, reason="Drift"
    )


def _gated_with_a_session_run_request(owner, reviewer):
    """A workload whose sessions a finding gated, with a session-run request pending."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest

    workload = ClassifiedWorkloadFactory(owner=owner)
    gate = _gate(workload, "gate", reviewer)
    workload.refresh_from_db()
    req = approvals.access_request_create(
        by=owner,
        workload=workload,
        kind=AccessRequest.Kind.SESSION_RUN,
        session="run-1",
        justification="The nightly run.",
    )
    return workload, gate, req


def test_two_reversals_at_once_lift_the_gate(reviewer, admin_user):
    workload = ClassifiedWorkloadFactory()
    first, second = _gate(workload, "one", reviewer), _gate(workload, "two", reviewer)
    first_done, second_started = threading.Event(), threading.Event()

    def reverse_first():
        with transaction.atomic():
            services.containment_reverse(action=first, by=admin_user, reason="Fixed")
            first_done.set()
            second_started.wait(timeout=10)
            time.sleep(0.5)  # the second reversal runs while this one is uncommitted

    def reverse_second():
        first_done.wait(timeout=10)
        second_started.set()
        services.containment_reverse(action=second, by=admin_user, reason="Fixed too")

    errors = _together(reverse_first, reverse_second)
    assert errors == []
    assert not Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_approving_a_session_run_while_the_gate_is_lifted_does_not_deadlock(
    reviewer, admin_user, owner, approver, monkeypatch
):
    """The approval locks the workload before the request, as the lifting reversal does
    (workload, then approvals and requests). Here the approval pauses after its request lock
    while the reversal starts: in the other order the two waited for each other."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest
    from workloads.models import SessionApproval

    workload, gate, req = _gated_with_a_session_run_request(owner, reviewer)
    holding = threading.Event()
    refusal = approvals._refusal_to_decide

    def pausing_refusal(locked_request, by):
        holding.set()
        time.sleep(0.5)  # the reversal starts while the approval holds its locks
        return refusal(locked_request, by)

    monkeypatch.setattr(approvals, "_refusal_to_decide", pausing_refusal)

    def approve():
        approvals.access_request_approve(access_request=req, by=approver)

    def lift():
        holding.wait(timeout=10)
        services.containment_reverse(action=gate, by=admin_user, reason="Fixed")

    errors = _together(approve, lift)
    assert errors == []
    # The approval went first; the lift then ended what it gave.
    assert AccessRequest.objects.get(pk=req.pk).status == AccessRequest.Status.APPROVED
    assert SessionApproval.objects.get(session="run-1").status == "revoked"
    assert not Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_evaluation_containing_two_workloads_does_not_deadlock_with_a_reversal(
    reviewer, admin_user, monkeypatch
):
    """Evaluation locks every workload it will contain, in id order, before the first
    containment moves the policy version. Here it pauses after containing the first workload
    while a reversal on the second takes that workload's row and then the policy version: had
    the second workload been locked only when its turn came, each would wait for the other."""
    from governance.evaluation.detectors import FindingDraft
    from governance.evaluation.services import findings_record
    from tests.factories import tier

    first = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    second = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    held = _gate(second, "held", reviewer)  # the reversal below lifts this gate
    sessions = [make_session(first), make_session(second)]
    contained = threading.Event()
    contain = services.finding_contain

    def pausing_contain(*, finding):
        actions = contain(finding=finding)
        if finding.workload_id == first.pk:
            contained.set()
            time.sleep(0.5)  # the reversal starts while this transaction holds its locks
        return actions

    monkeypatch.setattr(services, "finding_contain", pausing_contain)

    def evaluate():
        drafts = [
            (
                session,
                FindingDraft(
                    kind="reasoning_loop",
                    key="loop",
                    severity="high",
                    summary="Loops.",
                    evidence=(),
                    occurred_at=timezone.now(),
                ),
            )
            for session in sessions
        ]
        with transaction.atomic():
            findings_record(drafts)

    def reverse():
        contained.wait(timeout=10)
        services.containment_reverse(action=held, by=admin_user, reason="Fixed")

    errors = _together(evaluate, reverse)
    assert errors == []
    assert Finding.objects.filter(kind="reasoning_loop").count() == 2
    # Evaluation's own gate on the second workload stands; the reversal lifted only its record.
    assert Workload.objects.get(pk=second.pk).sessions_need_approval


def test_containment_reads_the_workload_status_under_its_lock(reviewer, admin_user, monkeypatch):
    """Evaluation loads a critical finding with its workload (suspended by another finding),
    then a reversal reinstates the workload and commits before evaluation locks it. Containment
    must act on the status it finds under the lock: the workload is active again, so it is
    suspended anew (acting on the status loaded earlier would record a suspension and leave the
    workload active)."""
    from governance.evaluation.detectors import FindingDraft
    from governance.evaluation.services import findings_record
    from governance.models import ContainmentAction
    from tests.factories import tier

    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    earlier = Finding.objects.create(
        kind="unentitled_tool",
        severity="critical",
        workload=workload,
        session=make_session(workload),
        summary="Used a tool it holds no grant of.",
        dedupe_key="earlier",
        occurred_at=timezone.now(),
    )
    with transaction.atomic():
        actions = services.finding_contain(finding=earlier)
    (suspension,) = [a for a in actions if a.action == "suspend_workload"]
    assert Workload.objects.get(pk=workload.pk).status == Workload.Status.SUSPENDED
    session = make_session(workload)
    loaded, reversed_ = threading.Event(), threading.Event()
    tier_contains = services.tier_contains

    def pausing_tier_contains(finding):
        loaded.set()
        reversed_.wait(timeout=10)  # the finding and its workload were read before this
        return tier_contains(finding)

    monkeypatch.setattr(services, "tier_contains", pausing_tier_contains)

    def evaluate():
        draft = FindingDraft(
            kind="unentitled_tool",
            key="again",
            severity="critical",
            summary="Again.",
            evidence=(),
            occurred_at=timezone.now(),
        )
        with transaction.atomic():
            findings_record([(session, draft)])

    def reverse():
        try:
            loaded.wait(timeout=10)
            services.containment_reverse(action=suspension, by=admin_user, reason="Fixed")
        finally:
            reversed_.set()

    errors = _together(evaluate, reverse)
    assert errors == []
    assert Workload.objects.get(pk=workload.pk).status == Workload.Status.SUSPENDED
    held = ContainmentAction.objects.filter(
        workload=workload, action="suspend_workload", reversed_at__isnull=True
    )
    assert [a.finding.dedupe_key for a in held] == [f"s{session.pk}:again"]


def test_evaluation_and_a_console_revoke_take_grant_and_policy_version_in_one_order(
    admin_user, monkeypatch
):
    """Evaluation moves each used grant's last use (locking the grant) before its containment
    moves the policy version, the order a console revoke takes (grant, then version). Here
    evaluation pauses holding both while the console revokes the grant evaluation used: the
    revoke waits its turn. Containment first would hold the version while the revoke held the
    grant, each waiting for the other."""
    from governance.evaluation import services as evaluation
    from tests.evaluation.rows import add_events, id_range
    from tests.factories import EntitlementFactory, tier
    from workloads.models import Entitlement, Tool
    from workloads.services import entitlement_revoke

    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    grant = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="web-search"),
        valid_from=timezone.now() - timedelta(hours=1),
    )
    session = make_session(workload)
    # A granted call (its last use is recorded) and an unentitled one: critical in the top
    # tier, so containment suspends and gates, moving the policy version.
    events = add_events(
        session,
        ("tool_call", 1, {"tool": "web-search"}),
        ("tool_call", 2, {"tool": "send-email"}),
    )
    holding = threading.Event()
    record = evaluation.findings_record

    def pausing_record(drafts, **kwargs):
        new = record(drafts, **kwargs)
        holding.set()
        time.sleep(0.5)  # the revoke starts while evaluation holds its locks
        return new

    monkeypatch.setattr(evaluation, "findings_record", pausing_record)

    def evaluate():
        evaluation.events_evaluate(**id_range(events))

    def revoke():
        holding.wait(timeout=10)
        entitlement_revoke(grant=grant, by=admin_user, reason="Rotating the key")

    errors = _together(evaluate, revoke)
    assert errors == []
    assert Entitlement.objects.get(pk=grant.pk).status == Entitlement.Status.REVOKED
    assert Finding.objects.filter(session=session, kind="unentitled_tool").exists()
    assert Workload.objects.get(pk=workload.pk).status == Workload.Status.SUSPENDED


def test_approving_a_tool_request_while_a_containment_is_reversed_does_not_deadlock(
    reviewer, admin_user, owner, approver, monkeypatch
):
    """A tool request's last approval audits its step (the audit chain's lock) before it
    grants (the workload's row); a reversal takes the workload and then the audit chain. The
    approval now locks the workload first, whatever the request's kind."""
    from governance.approvals import services as approvals
    from tests.factories import tier
    from workloads.models import Entitlement, Tool

    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-read"))
    gate = _gate(workload, "gate", reviewer)
    req = approvals.access_request_create(
        by=owner,
        workload=workload,
        tools=[Tool.objects.get(slug="web-search")],
        justification="Research.",
    )
    holding = threading.Event()
    grant = approvals._grant

    def pausing_grant(*args, **kwargs):
        holding.set()
        time.sleep(0.7)  # the reversal starts while the approval holds its locks
        return grant(*args, **kwargs)

    monkeypatch.setattr(approvals, "_grant", pausing_grant)

    def approve():
        approvals.access_request_approve(access_request=req, by=approver)

    def reverse():
        holding.wait(timeout=10)
        services.containment_reverse(action=gate, by=admin_user, reason="Fixed")

    errors = _together(approve, reverse)
    assert errors == []
    assert Entitlement.objects.filter(workload=workload, tool__slug="web-search").exists()
    assert not Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_a_merge_waits_for_a_reversal_of_the_survivors_narrowing(reviewer, admin_user, monkeypatch):
    """The survivor's narrowing is being reversed while a fold merges a duplicate that also
    narrowed: the merge must see the reversal finished and keep the duplicate's caps (read
    half done, it folded them into the reversed record and deleted the duplicate's)."""
    from governance.findings import narrowing

    workload = ClassifiedWorkloadFactory()

    def narrowed(key, cap):
        finding = Finding.objects.create(
            kind="budget_exceeded",
            severity="medium",
            workload=workload,
            session=make_session(workload),
            summary="Over budget.",
            dedupe_key=key,
            occurred_at=timezone.now(),
        )
        return services.containment_apply(
            finding=finding,
            action="narrow_sessions",
            by=reviewer,
            reason="Runaway",
            limits={"max_tool_calls": cap},
        )

    kept, duplicate = narrowed("kept", 8), narrowed("dup", 4)
    holding = threading.Event()
    bump = services.policy_version_bump

    def pausing_bump():
        bump()
        holding.set()
        time.sleep(0.5)  # the merge starts while the reversal holds the survivor's record

    monkeypatch.setattr(services, "policy_version_bump", pausing_bump)

    def reverse():
        services.containment_reverse(action=kept, by=admin_user, reason="Fixed")

    def merge():
        holding.wait(timeout=10)
        with transaction.atomic():
            services.finding_merge(
                duplicate=Finding.objects.get(pk=duplicate.finding_id),
                into=Finding.objects.get(pk=kept.finding_id),
            )

    errors = _together(reverse, merge)
    assert errors == []
    assert narrowing.caps_in_force([workload.pk]) == {workload.pk: {"max_tool_calls": 4}}


def test_a_lift_says_when_a_finding_contained_the_workload_meanwhile(
    reviewer, admin_user, monkeypatch
):
    """A reviewer gates the workload over a new finding while an IAM admin lifts the gate:
    the lift reverses what it found, and reports the new holder instead of claiming the gate
    was lifted."""
    workload = ClassifiedWorkloadFactory()
    _gate(workload, "old", reviewer)
    fresh = Finding.objects.create(
        kind="intent_drift",
        severity="medium",
        workload=workload,
        session=make_session(workload),
        summary="Drifted again.",
        dedupe_key="fresh",
        occurred_at=timezone.now(),
    )
    holding, lifts = threading.Event(), []

    def contain():
        with transaction.atomic():
            services.containment_apply(
                finding=fresh, action="gate_sessions", by=reviewer, reason="Again"
            )
            holding.set()
            time.sleep(0.5)  # the lift starts while this holds the workload

    def lift():
        holding.wait(timeout=10)
        lifts.append(
            services.containment_lift(
                workload=workload, action="gate_sessions", by=admin_user, reason="Fixed"
            )
        )

    errors = _together(contain, lift)
    assert errors == []
    assert lifts[0].still_held_by == [fresh.pk]
    assert Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_reclassifying_while_a_grant_is_revoked_does_not_deadlock(admin_user):
    """A reclassification shortens the workload's grants: it locks them before it writes any
    audit event, the order a revocation takes (grant, then the audit chain). Here the
    revocation holds its grant while the reclassification starts: with the grants locked
    after the classification's audit event, the two waited for each other."""
    from tests.factories import EntitlementFactory, tier
    from workloads import services as workload_services
    from workloads.models import Entitlement, Tool

    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    grant = EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=timezone.now() + timedelta(days=150),
    )
    holding = threading.Event()

    def revoke():
        with transaction.atomic():
            Entitlement.objects.select_for_update().get(pk=grant.pk)
            holding.set()
            time.sleep(0.5)  # the reclassification starts while the grant is held
            workload_services.entitlement_revoke(grant=grant, by=admin_user, reason="Leaked")

    def reclassify():
        holding.wait(timeout=10)
        workload_services.workload_classify(
            workload=workload, tier=tier("boundary-crossing"), by=admin_user, rationale="Email"
        )

    errors = _together(revoke, reclassify)
    assert errors == []
    assert Entitlement.objects.get(pk=grant.pk).status == "revoked"
    assert Workload.objects.get(pk=workload.pk).tier.slug == "boundary-crossing"


def _superseding_request(workload, owner, approver, tool):
    """A tools request for a tool the workload holds, one approval short of granting (its
    last approval supersedes the grant)."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest

    req = approvals.access_request_create(
        by=owner, workload=workload, tools=[tool], justification="A fresh grant.", duration_days=7
    )
    approvals.access_request_approve(access_request=req, by=approver)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.PENDING
    return req


def _pausing_tool_uses(monkeypatch, holding):
    """Evaluation pauses once it has moved the used grants' last use (holding their locks)."""
    from governance.evaluation import store

    record = store.tool_uses_record

    def pausing(uses):
        record(uses)
        holding.set()
        time.sleep(0.5)  # the approval starts while evaluation holds its locks

    monkeypatch.setattr(store, "tool_uses_record", pausing)


@pytest.mark.parametrize("contained", ["the same workload", "another workload"])
def test_evaluation_and_a_superseding_approval_take_workload_grant_and_chain_in_one_order(
    contained, owner, approver, monkeypatch
):
    """Evaluation moves a used grant's last use, then contains a workload; the last approval
    of a request for that tool supersedes the grant. Both now take workloads, then grants,
    then the audit chain. Before, evaluation held the grant and wanted the workload it
    contained (the approval held it), or the chain (the approval had audited its step)."""
    from governance.approvals import services as approvals
    from governance.evaluation import services as evaluation
    from tests.evaluation.rows import add_events, id_range
    from tests.factories import EntitlementFactory, UserFactory, tier
    from workloads.models import Entitlement, Tool

    tool = Tool.objects.get(slug="web-search")
    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("boundary-crossing"))
    grant = EntitlementFactory(
        workload=workload, tool=tool, valid_from=timezone.now() - timedelta(hours=1)
    )
    second = UserFactory(username="second-approver")
    second.groups.set(approver.groups.all())
    req = _superseding_request(workload, owner, approver, tool)
    session = make_session(workload)
    calls = [("tool_call", 1, {"tool": "web-search"})]  # its last use moves
    other = None
    if contained == "the same workload":
        calls.append(("tool_call", 2, {"tool": "send-email"}))  # critical: contained
    else:
        other = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
        calls_elsewhere = add_events(make_session(other), ("tool_call", 1, {"tool": "send-email"}))
    events = add_events(session, *calls)
    if other is not None:
        events += calls_elsewhere
    holding = threading.Event()
    _pausing_tool_uses(monkeypatch, holding)

    def evaluate():
        evaluation.events_evaluate(**id_range(events))

    def approve():
        holding.wait(timeout=10)
        approvals.access_request_approve(access_request=req, by=second)

    errors = _together(evaluate, approve)
    assert not [e for e in errors if isinstance(e, OperationalError)]  # no deadlock
    assert Finding.objects.filter(kind="unentitled_tool").exists()
    if other is None:
        # Evaluation went first and suspended the workload: the approval is then refused.
        assert Workload.objects.get(pk=workload.pk).status == Workload.Status.SUSPENDED
        assert [type(e).__name__ for e in errors] == ["Conflict"]
    else:
        assert errors == []
        assert Entitlement.objects.get(pk=grant.pk).status == Entitlement.Status.REVOKED


def test_evaluation_does_not_wait_for_a_workload_it_did_not_lock_before_its_grants(
    monkeypatch,
):
    """A workload whose tier turned containing after evaluation's early lock read it (a
    reclassification committing meanwhile) is locked without waiting: evaluation holds
    grants by then, and waiting for a holder that waits for those grants is a deadlock.
    The batch fails at once and its task retries."""
    from governance.evaluation import services as evaluation
    from governance.evaluation import store
    from tests.evaluation.rows import add_events, id_range
    from tests.factories import tier

    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    events = add_events(make_session(workload), ("tool_call", 1, {"tool": "send-email"}))
    monkeypatch.setattr(store, "workloads_lock_containing", lambda drafted: set())
    holding = threading.Event()
    waited: list[float] = []

    def hold():
        with transaction.atomic():
            Workload.objects.select_for_update().get(pk=workload.pk)
            holding.set()
            time.sleep(3)  # well past anything evaluation does before it reaches the lock

    def evaluate():
        holding.wait(timeout=10)
        started = time.monotonic()
        try:
            evaluation.events_evaluate(**id_range(events))
        finally:
            waited.append(time.monotonic() - started)

    errors = _together(hold, evaluate)
    assert [type(e).__name__ for e in errors] == ["OperationalError"]
    assert waited[0] < 2.0  # it did not wait for the holder
    assert not Finding.objects.exists()  # the batch rolled back, for its retry


def _revoking_while_evaluating(grant, events, admin_user) -> list[Exception]:
    """A console revoke holds `grant` while evaluation of `events` contains; what each
    raised."""
    from governance.evaluation.services import events_evaluate
    from tests.evaluation.rows import id_range
    from workloads.models import Entitlement
    from workloads.services import entitlement_revoke

    holding = threading.Event()

    def revoke():
        with transaction.atomic():
            Entitlement.objects.select_for_update().get(pk=grant.pk)
            holding.set()
            time.sleep(0.5)  # evaluation contains while the console holds the grant
            entitlement_revoke(grant=grant, by=admin_user, reason="Leaked key")

    def evaluate():
        holding.wait(timeout=10)
        events_evaluate(**id_range(events))

    return _together(revoke, evaluate)


def test_a_critical_finding_revokes_its_grant_in_the_order_a_console_revoke_takes(admin_user):
    """Containment locks the grant it revokes before its first audit event (the gate's),
    the order a console revoke takes (grant, then the audit chain). Here the console holds
    the grant while evaluation contains: with the grant locked after the gate's audit, each
    waited for the other. The console's revocation lands first; containment finds the grant
    revoked already and records no second revocation."""
    from governance.models import ContainmentAction
    from tests.evaluation.rows import add_events
    from tests.factories import EntitlementFactory, tier
    from workloads.models import CombinationRule, Entitlement, Tool

    CombinationRule.objects.filter(slug="lethal-trifecta").update(effect="forbid", scope="dynamic")
    workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    grants = {
        slug: EntitlementFactory(
            workload=workload,
            tool=Tool.objects.get(slug=slug),
            valid_from=timezone.now() - timedelta(minutes=30),
        )
        for slug in ("sql-query", "web-search", "send-email")
    }
    # Each grant's last use moved within the hour: evaluation does not lock them early.
    Entitlement.objects.filter(workload=workload).update(last_used_at=timezone.now())
    events = add_events(
        make_session(workload),
        ("tool_call", 1, {"tool": "sql-query"}),
        ("tool_call", 2, {"tool": "web-search"}),
        ("tool_call", 3, {"tool": "send-email"}),  # completes the forbidden mix: critical
    )
    abused = grants["send-email"]
    errors = _revoking_while_evaluating(abused, events, admin_user)
    assert errors == []
    assert Entitlement.objects.get(pk=abused.pk).revoked_by == admin_user
    assert Workload.objects.get(pk=workload.pk).status == Workload.Status.SUSPENDED
    assert not ContainmentAction.objects.filter(action="revoke_grant").exists()


def test_lifting_a_gate_while_a_session_run_request_is_denied_does_not_deadlock(
    reviewer, admin_user, owner, approver
):
    """A lifted gate cancels the pending session-run requests; it now locks them with the
    workload, before its audit events. Denying one takes the request, then the audit chain:
    with the requests locked after the lift's audit, each waited for the other."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest

    workload, gate, req = _gated_with_a_session_run_request(owner, reviewer)
    holding = threading.Event()

    def deny():
        with transaction.atomic():
            AccessRequest.objects.select_for_update().get(pk=req.pk)
            holding.set()
            time.sleep(0.5)  # the lift starts while the denial holds the request
            approvals.access_request_deny(access_request=req, by=approver, comment="Not now")

    def lift():
        holding.wait(timeout=10)
        services.containment_reverse(action=gate, by=admin_user, reason="Fixed")

    errors = _together(deny, lift)
    assert errors == []
    assert AccessRequest.objects.get(pk=req.pk).status == AccessRequest.Status.DENIED
    assert not Workload.objects.get(pk=workload.pk).sessions_need_approval


def test_a_batch_containing_two_workloads_locks_every_grant_it_revokes_before_its_audits(
    admin_user,
):
    """One batch contains two workloads: the second's grant used to be locked after the
    first's audit events (the chain), while a console revoke held that grant and waited for
    the chain. Every grant the batch will revoke is now locked before its first audit."""
    from tests.evaluation.rows import add_events
    from tests.factories import EntitlementFactory, tier
    from workloads.models import CombinationRule, Entitlement, Tool

    CombinationRule.objects.filter(slug="lethal-trifecta").update(effect="forbid", scope="dynamic")
    events, abused = [], None
    for _ in range(2):
        workload = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
        for slug in ("sql-query", "web-search", "send-email"):
            grant = EntitlementFactory(
                workload=workload,
                tool=Tool.objects.get(slug=slug),
                valid_from=timezone.now() - timedelta(minutes=30),
                last_used_at=timezone.now(),  # not locked early for its last use
            )
        abused = grant  # the second workload's send-email grant
        events += add_events(
            make_session(workload),
            ("tool_call", 1, {"tool": "sql-query"}),
            ("tool_call", 2, {"tool": "web-search"}),
            ("tool_call", 3, {"tool": "send-email"}),
        )
    errors = _revoking_while_evaluating(abused, events, admin_user)
    assert errors == []
    assert Entitlement.objects.get(pk=abused.pk).revoked_by == admin_user
    assert Workload.objects.filter(status=Workload.Status.SUSPENDED).count() == 2


def test_a_session_run_approval_does_not_deadlock_with_expiring_the_earlier_one(
    reviewer, owner, approver, monkeypatch
):
    """The last approval of a session run closes an earlier approval of the same session
    (past its end, not yet marked); the expiry job takes that approval's row, then the audit
    chain. The approval locks it before its first audit event: here the expiry pauses holding
    the row, and an approval that audited first would wait for it holding the chain."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest
    from workloads.models import SessionApproval

    workload, _gate_action, first = _gated_with_a_session_run_request(owner, reviewer)
    approvals.access_request_approve(access_request=first, by=approver)
    now = timezone.now()
    SessionApproval.objects.filter(session="run-1").update(
        valid_from=now - timedelta(hours=2), valid_until=now - timedelta(seconds=1)
    )
    again = approvals.access_request_create(
        by=owner,
        workload=workload,
        kind=AccessRequest.Kind.SESSION_RUN,
        session="run-1",
        justification="The nightly run, again.",
    )
    expiring = threading.Event()
    audit = approvals.audit_record

    def pausing_audit(*, by, action, **fields):
        if action == "session_approval.expire" and by is None:  # the expiry job's
            expiring.set()
            time.sleep(0.5)  # the approval starts while the expiry holds the row
        return audit(by=by, action=action, **fields)

    monkeypatch.setattr(approvals, "audit_record", pausing_audit)

    def approve():
        expiring.wait(timeout=10)
        approvals.access_request_approve(access_request=again, by=approver)

    errors = _together(lambda: approvals.grants_expire(), approve)
    assert errors == []
    statuses = sorted(SessionApproval.objects.filter(session="run-1").values_list("status"))
    assert statuses == [("active",), ("expired",)]


def test_a_containment_during_a_merge_is_seen_by_it(reviewer, monkeypatch):
    """A merge moves the duplicate's gate record onto the survivor unless the survivor holds
    one in force. It locks both findings first, as a reviewer's containment locks its
    finding: here the merge pauses after reading the survivor's records while a reviewer
    gates over the survivor. Without the finding locks the reviewer's record landed in
    between and the merge's move broke the one-gate-per-finding constraint."""
    from governance.models import ContainmentAction

    workload = ClassifiedWorkloadFactory()
    duplicate = _gate(workload, "first", reviewer).finding
    into = Finding.objects.create(
        kind="intent_drift",
        severity="medium",
        workload=workload,
        session=make_session(workload),
        summary="Drifted again.",
        dedupe_key="second",
        occurred_at=timezone.now(),
    )
    merging, read = [], threading.Event()
    measure = services._measure

    def pausing_measure(action):
        if threading.current_thread() in merging and not read.is_set():
            read.set()
            time.sleep(0.5)  # the reviewer gates while the merge holds what it read
        return measure(action)

    monkeypatch.setattr(services, "_measure", pausing_measure)

    def merge():
        merging.append(threading.current_thread())
        with transaction.atomic():
            services.finding_merge(duplicate=duplicate, into=into)

    def contain():
        read.wait(timeout=10)
        services.containment_apply(
            finding=into, action="gate_sessions", by=reviewer, reason="Drifted again"
        )

    errors = _together(merge, contain)
    # The reviewer's containment waited for the merge, then found the gate already held.
    assert [type(e).__name__ for e in errors] == ["Conflict"]
    in_force = ContainmentAction.objects.filter(finding=into, reversed_at=None)
    assert [a.action for a in in_force] == ["gate_sessions"]


def test_reclassifying_while_a_pending_request_is_denied_does_not_deadlock(
    owner, approver, admin_user
):
    """A reclassification locks the workload's pending requests (to add the steps a stricter
    tier needs) before it writes any audit event, such as a shortened grant's: a denial holds
    its request, then takes the audit chain. With the requests locked after the grants were
    shortened and audited, the two waited for each other."""
    from governance.approvals import services as approvals
    from governance.models import AccessRequest
    from tests.factories import EntitlementFactory, tier
    from workloads import services as workload_services
    from workloads.models import Tool

    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-read"))
    EntitlementFactory(  # longer than boundary-crossing grants: the move shortens it
        workload=workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=timezone.now() + timedelta(days=150),
    )
    req = approvals.access_request_create(
        by=owner,
        workload=workload,
        tools=[Tool.objects.get(slug="web-search")],
        justification="Look things up.",
        duration_days=7,
    )
    holding = threading.Event()

    def deny():
        with transaction.atomic():
            AccessRequest.objects.select_for_update().get(pk=req.pk)
            holding.set()
            time.sleep(0.5)  # the reclassification starts while the request is held
            approvals.access_request_deny(access_request=req, by=approver, comment="Not now.")

    def reclassify():
        holding.wait(timeout=10)
        workload_services.workload_classify(
            workload=workload, tier=tier("boundary-crossing"), by=admin_user, rationale="Web"
        )

    errors = _together(deny, reclassify)
    assert errors == []
    assert AccessRequest.objects.get(pk=req.pk).status == "denied"
    assert Workload.objects.get(pk=workload.pk).tier.slug == "boundary-crossing"
