"""What keeps evaluation fast by design: a batch costs the same number of statements however
many sessions it touches, and compiled policy snapshots are reused until the policy changes."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.evaluation import snapshot
from governance.evaluation.detectors import limits_at
from governance.evaluation.services import events_evaluate
from governance.evaluation.snapshot import policy_snapshots_cached, snapshot_cache_clear
from governance.models import Finding
from tests.evaluation.rows import add_events, make_session
from workloads.models import PendingEvaluation, SessionExtension
from workloads.services import entitlement_revoke

pytestmark = pytest.mark.django_db


def _evaluate_sessions(workload, count: int) -> int:
    """Queries to evaluate one batch holding `count` sessions (one finding each)."""
    events = []
    for _ in range(count):
        session = make_session(workload)
        events += add_events(
            session,
            ("session_start", 0, {"content": "Summarise ticket 4411"}),
            ("tool_call", 1, {"tool": "send-email"}),
        )
    ids = [e.id for e in events]
    with CaptureQueriesContext(connection) as queries:
        result = events_evaluate(min_id=min(ids), max_id=max(ids))
    assert result.events == len(events)
    assert result.findings == count
    return len(queries)


def test_a_batch_costs_the_same_statements_for_3_sessions_as_for_30(workload):
    _evaluate_sessions(workload, 1)  # compiles the policy snapshot (cached after)
    few = _evaluate_sessions(workload, 3)
    many = _evaluate_sessions(workload, 30)
    assert many == few
    assert not PendingEvaluation.objects.exists()
    assert Finding.objects.count() == 34


def test_compiled_snapshots_are_reused_while_the_policy_version_holds(workload, monkeypatch):
    compiled = []
    real = snapshot.policy_snapshots
    monkeypatch.setattr(
        snapshot, "policy_snapshots", lambda ids, at: compiled.append(set(ids)) or real(ids, at=at)
    )
    now = timezone.now()
    first = policy_snapshots_cached({workload.id}, at=now)
    again = policy_snapshots_cached({workload.id}, at=now)
    assert again[workload.id] is first[workload.id]
    assert compiled == [{workload.id}]


def test_a_change_that_bumps_the_policy_version_is_seen_at_once(workload, admin_user):
    grant = workload.entitlements.get()
    before = policy_snapshots_cached({workload.id}, at=timezone.now())[workload.id]
    assert [g.status for g in before.grants] == ["active"]
    entitlement_revoke(grant=grant, by=admin_user, reason="compromised")
    after = policy_snapshots_cached({workload.id}, at=timezone.now())[workload.id]
    assert [g.status for g in after.grants] == ["revoked"]


def test_a_cached_snapshot_knows_when_a_session_extension_starts_and_ends(workload):
    """Limits carry their times, so a snapshot compiled before an extension starts stays
    right after it starts, and after it ends."""
    now = timezone.now()
    SessionExtension.objects.create(
        workload=workload,
        max_tool_calls=500,
        valid_from=now + timedelta(seconds=30),
        valid_until=now + timedelta(hours=1),
    )
    cached = policy_snapshots_cached({workload.id}, at=now)[workload.id]
    usual = workload.tier.max_tool_calls
    assert cached.limits.max_tool_calls == usual
    during, after = now + timedelta(seconds=30), now + timedelta(hours=1)
    assert limits_at(cached, during).max_tool_calls == 500
    assert limits_at(cached, after).max_tool_calls == usual


def test_no_cache_when_its_lifetime_is_zero(workload, settings, monkeypatch):
    settings.MANDATE_EVALUATION_SNAPSHOT_SECONDS = 0
    snapshot_cache_clear()
    now = timezone.now()
    first = policy_snapshots_cached({workload.id}, at=now)
    again = policy_snapshots_cached({workload.id}, at=now)
    assert again[workload.id] is not first[workload.id]
