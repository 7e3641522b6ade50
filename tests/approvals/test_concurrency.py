"""Separation of duties under concurrency, on PostgreSQL: real threads, real row locks.

SQLite serialises whole-database writes and has no SELECT ... FOR UPDATE, so these skip there.
"""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import F

from governance.approvals import services
from governance.errors import DomainError
from governance.models import AccessRequest, ApprovalDecision, AuditEvent
from governance.roles import APPROVER
from tests.factories import ClassifiedWorkloadFactory, tier
from workloads.models import Entitlement, Tool

from .conftest import user_with

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

TRIALS = 12
RACERS = 10


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (set DATABASE_URL)")


def _race(users, target, *, kwargs_for=lambda user: {}):
    """Start one thread per user at the same instant; return each one's outcome."""
    barrier = threading.Barrier(len(users))
    outcomes: dict[int, str] = {}

    def run(index, user):
        try:
            barrier.wait(timeout=30)
            target(by=user, **kwargs_for(user))
            outcomes[index] = "ok"
        except DomainError as exc:
            outcomes[index] = exc.code
        except Exception as exc:
            outcomes[index] = f"error:{type(exc).__name__}:{exc}"
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, u)) for i, u in enumerate(users)]
    connection.close()  # give the main thread's connection back to the pool while they race
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return [outcomes.get(i, "hung") for i in range(len(users))]


def test_ten_approvers_racing_on_the_last_step_make_exactly_one_transition(owner):
    owner.groups.add(Group.objects.get(name=APPROVER))  # an owner who is also an approver
    first = user_with("first-approver", APPROVER)
    racers = [user_with(f"racer{i}", APPROVER) for i in range(RACERS)]
    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-act"))
    assert workload.tier.approvals_required == 2
    tool = Tool.objects.get(slug="crm-api")
    for _trial in range(TRIALS):
        req = services.access_request_create(
            by=owner, workload=workload, tools=[tool], justification="Race.", duration_days=5
        )
        services.access_request_approve(access_request=req, by=first)

        # The owner (the requester) races too: it must never get a decision in.
        outcomes = _race(
            [*racers, owner],
            lambda by, req=req: services.access_request_approve(access_request=req, by=by),
        )

        assert outcomes.count("ok") == 1, outcomes
        assert outcomes[-1] in ("self_approval", "not_pending"), outcomes
        assert set(outcomes[:-1]) <= {"not_pending", "ok"}, outcomes
        req.refresh_from_db()
        assert req.status == AccessRequest.Status.APPROVED
        assert req.decisions.count() == 2
        assert (
            AuditEvent.objects.filter(action="request.approve", object_id=str(req.pk)).count() == 1
        )
        assert Entitlement.objects.filter(request=req).count() == 1

    assert not ApprovalDecision.objects.filter(approver=F("requester")).exists()
    assert not ApprovalDecision.objects.filter(approver=F("workload_owner")).exists()
    assert Entitlement.objects.filter(workload=workload, status="active").count() == 1


def test_one_approver_double_submitting_gets_one_decision(owner, approver):
    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-act"))
    req = services.access_request_create(
        by=owner,
        workload=workload,
        tools=[Tool.objects.get(slug="crm-api")],
        justification="Double click.",
        duration_days=5,
    )
    outcomes = _race(
        [approver] * 6,
        lambda by: services.access_request_approve(access_request=req, by=by),
    )
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) == {"ok", "already_decided"}, outcomes
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.PENDING
    assert req.decisions.count() == 1


def test_an_approve_racing_a_deny_leaves_one_outcome(owner, approver, admin_user):
    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-read"))
    for _trial in range(5):
        req = services.access_request_create(
            by=owner,
            workload=workload,
            tools=[Tool.objects.get(slug="sql-query")],
            justification="Approve or deny.",
            duration_days=5,
        )

        def decide(by, req=req):
            if by == approver:
                services.access_request_approve(access_request=req, by=by)
            else:
                services.access_request_deny(access_request=req, by=by, comment="No.")

        outcomes = _race([approver, admin_user], decide)
        assert sorted(outcomes) == ["not_pending", "ok"], outcomes
        req.refresh_from_db()
        assert req.decisions.count() == 1
        assert (req.status == "approved") == Entitlement.objects.filter(request=req).exists()


def test_an_owner_and_an_iam_admin_racing_to_revoke_a_window_make_one_revocation(owner, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from workloads.models import SessionExtension

    workload = ClassifiedWorkloadFactory(owner=owner, tier=tier("internal-act"))
    window = SessionExtension.objects.create(
        workload=workload, max_tool_calls=900, valid_until=timezone.now() + timedelta(days=3)
    )
    outcomes = _race(
        [owner, admin_user] * 3,
        lambda by: services.session_extension_revoke(extension=window, by=by, reason="Done."),
    )
    assert sorted(outcomes) == ["not_active"] * 5 + ["ok"], outcomes
    assert AuditEvent.objects.filter(action="extension.revoke").count() == 1
