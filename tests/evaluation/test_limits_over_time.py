"""Session limits at the time: policy edits, extensions and narrowings start and end, and
evaluation judges a session by the limits it ran under, however late it runs (a re-run, a late
batch)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from governance.evaluation.detectors import Limits, PolicySnapshot, limits_at
from governance.evaluation.services import events_evaluate
from governance.evaluation.snapshot import BEGINNING, limits_over_time
from governance.findings.narrowing import capped
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from workloads.models import SessionExtension
from workloads.selectors import extended

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BASE = {
    "max_session_seconds": 600,
    "idle_timeout_seconds": 120,
    "max_tool_calls": 10,
    "max_reasoning_tokens": 1000,
    "loop_threshold": 3,
}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_with_no_extension_or_narrowing_the_policy_holds_throughout():
    assert limits_over_time(BASE, [], []) == ((BEGINNING, Limits(**BASE)),)


def test_an_extension_raises_limits_for_its_window_only():
    changes = limits_over_time(BASE, [(at(10), at(20), {"max_tool_calls": 50})], [])
    policy = PolicySnapshot(workload_status="active", limit_changes=changes)
    assert limits_at(policy, at(9)).max_tool_calls == 10
    assert limits_at(policy, at(10)).max_tool_calls == 50
    assert limits_at(policy, at(19)).max_tool_calls == 50
    assert limits_at(policy, at(20)).max_tool_calls == 10


def test_a_narrowing_caps_from_when_it_was_taken_until_it_is_reversed_over_an_extension():
    changes = limits_over_time(
        BASE,
        [(at(0), at(60), {"max_tool_calls": 50, "max_session_seconds": 3600})],
        [(at(10), at(30), {"max_tool_calls": 5}), (at(20), None, {"max_tool_calls": 2})],
    )
    policy = PolicySnapshot(workload_status="active", limit_changes=changes)
    assert [limits_at(policy, at(m)).max_tool_calls for m in (5, 15, 25, 45, 90)] == [
        50,  # the extension alone
        5,  # the first narrowing holds the extension down
        2,  # the lower of two narrowings
        2,  # the first reversed, the second stands
        2,  # the extension ended, the standing cap still holds the policy
    ]
    assert limits_at(policy, at(15)).max_session_seconds == 3600  # not a capped limit


windows = st.lists(
    st.tuples(
        st.integers(0, 30),
        st.one_of(st.none(), st.integers(0, 30)),
        st.sampled_from(["max_tool_calls", "max_session_seconds"]),
        st.integers(1, 100),
    ),
    max_size=6,
)


edits = st.lists(st.tuples(st.integers(0, 30), st.integers(1, 100)), max_size=4)


@given(raises=windows, caps=windows, edits=edits)
def test_the_sweep_agrees_with_the_limits_worked_out_at_each_moment(raises, caps, edits):
    def as_windows(drawn):
        return [
            (at(start), None if until is None else at(until), {name: value})
            for start, until, name, value in drawn
        ]

    def in_force(window, moment):
        start, until, _ = window
        return start <= moment and (until is None or moment < until)

    raising, capping = as_windows(raises), as_windows(caps)
    policies = [(at(minute), BASE | {"max_tool_calls": calls}) for minute, calls in edits]
    policy = PolicySnapshot(
        workload_status="active",
        limit_changes=limits_over_time(BASE, raising, capping, policies),
    )
    for minute in range(-1, 32):
        moment = at(minute)
        expected = dict(BASE)
        for since, edited in sorted(policies, key=lambda edit: edit[0]):  # the last by then
            if since <= moment:
                expected = dict(edited)
        for window in raising:
            if in_force(window, moment):
                expected = extended(expected, window[2])
        for window in capping:
            if in_force(window, moment):
                expected = capped(expected, window[2])
        assert limits_at(policy, moment) == Limits(**expected), minute


def test_a_policy_edit_holds_from_its_moment_under_the_windows_open_then():
    changes = limits_over_time(
        BASE,
        [(at(0), at(60), {"max_session_seconds": 3600})],
        [],
        [(at(10), BASE | {"max_tool_calls": 4, "max_session_seconds": 300})],
    )
    policy = PolicySnapshot(workload_status="active", limit_changes=changes)
    assert limits_at(policy, at(9)).max_tool_calls == 10
    assert limits_at(policy, at(10)).max_tool_calls == 4
    assert limits_at(policy, at(30)).max_session_seconds == 3600  # still extended
    assert limits_at(policy, at(60)).max_session_seconds == 300


def test_moments_where_nothing_changes_are_not_kept():
    changes = limits_over_time(BASE, [(at(10), at(20), {"max_tool_calls": 5})], [])
    assert [since for since, _ in changes] == [BEGINNING]  # 5 is below the policy's 10


@pytest.fixture
def budget(workload):
    """internal-read's reasoning-token budget."""
    return workload.tier.max_reasoning_tokens


def _session_using(workload, tokens: int, *, started_at, received_at=None):
    session = make_session(workload, started_at=started_at)
    fields = {"reasoning_tokens": tokens, "received_at": received_at or started_at}
    return session, add_events(session, ("reasoning_step", 1, fields))


@pytest.fixture
def started(workload, budget):
    """Three hours ago, inside a two-hour extension that doubled the budget."""
    started = timezone.now() - timedelta(hours=3)
    SessionExtension.objects.create(
        workload=workload,
        max_reasoning_tokens=budget * 2,
        valid_from=started - timedelta(hours=1),
        valid_until=started + timedelta(hours=1),
    )
    return started


def test_a_session_within_a_window_that_has_since_ended_is_not_flagged(workload, budget, started):
    session, events = _session_using(workload, budget + 1, started_at=started)
    events_evaluate(**id_range(events))
    assert not Finding.objects.filter(session=session, kind="budget_exceeded").exists()


def test_a_backdated_event_cannot_borrow_an_old_window(workload, budget, started):
    """Reported now, dated into a window that ended hours ago: judged at the earliest moment
    its arrival allows, when the window no longer held."""
    session, events = _session_using(
        workload, budget + 1, started_at=started, received_at=timezone.now()
    )
    events_evaluate(**id_range(events))
    (over,) = Finding.objects.filter(session=session, kind="budget_exceeded")
    assert over.details["limit"] == budget


def test_the_totals_are_judged_alike_whatever_order_the_events_arrive_in(workload, budget):
    """An early event arriving after later ones adds to a total that already holds them: it
    is judged by the limits at the latest moment seen (a window raised by then), so the live
    run, in two batches, and a re-run agree."""
    started = timezone.now() - timedelta(hours=1)
    SessionExtension.objects.create(
        workload=workload,
        max_reasoning_tokens=budget * 2,
        valid_from=started + timedelta(seconds=60),
        valid_until=started + timedelta(hours=2),
    )
    session = make_session(workload, started_at=started)

    def step(seconds, tokens):
        at = started + timedelta(seconds=seconds)
        fields = {"reasoning_tokens": tokens, "received_at": at}
        return add_events(session, ("reasoning_step", seconds, fields))

    events_evaluate(**id_range(step(120, budget * 3 // 2)))  # inside the longer window
    events_evaluate(**id_range(step(1, budget // 10)))  # before it, arriving late
    assert not Finding.objects.filter(session=session, kind="budget_exceeded").exists()
    assert _replayed_findings(session) == 0


def _replayed_findings(session) -> int:
    """Findings a fresh replay of the session raises."""
    from governance.evaluation import store
    from governance.evaluation.services import findings_record, sessions_apply
    from workloads.models import Session

    with transaction.atomic():
        sessions = list(Session.objects.filter(pk=session.pk).only(*store.SESSION_FIELDS))
        drafts = sessions_apply(sessions, store.session_events(sessions), fresh=True)
        return len(findings_record(drafts))


@pytest.fixture
def tightened(workload, budget, admin_user):
    """A session three hours ago within the budget of its time; the budget halved an hour ago
    (longer ago than an event may arrive late)."""
    from workloads.models import Workload
    from workloads.services import session_policy_update

    Workload.objects.filter(pk=workload.pk).update(created_at=timezone.now() - timedelta(days=1))
    session, events = _session_using(
        workload, budget - 1, started_at=timezone.now() - timedelta(hours=3)
    )
    session_policy_update(workload=workload, by=admin_user, max_reasoning_tokens=budget // 2)
    tightening = workload.session_limits_changes.latest("id")
    tightening.effective_from = timezone.now() - timedelta(hours=1)
    tightening.save(update_fields=["effective_from"])
    return session, events


def test_a_session_within_the_policy_of_its_time_is_not_flagged_after_a_tightening(
    workload, tightened
):
    session, events = tightened
    events_evaluate(**id_range(events))
    assert not Finding.objects.filter(session=session, kind="budget_exceeded").exists()
    assert _replayed_findings(session) == 0


def test_a_session_after_the_tightening_is_held_to_it(workload, budget, tightened):
    session, events = _session_using(workload, budget - 1, started_at=timezone.now())
    events_evaluate(**id_range(events))
    (over,) = Finding.objects.filter(session=session, kind="budget_exceeded")
    assert over.details["limit"] == budget // 2


def test_a_backdated_event_cannot_escape_a_tightening(workload, budget, tightened):
    session, events = _session_using(
        workload,
        budget - 1,
        started_at=timezone.now() - timedelta(hours=3),
        received_at=timezone.now(),
    )
    events_evaluate(**id_range(events))
    (over,) = Finding.objects.filter(session=session, kind="budget_exceeded")
    assert over.details["limit"] == budget // 2


def test_a_policy_changed_outside_the_services_holds_from_the_last_record(workload, tightened):
    """A row edited by hand leaves no record: evaluation then trusts the policy as it is."""
    from governance.evaluation.snapshot import policy_snapshots
    from workloads.models import SessionPolicy

    SessionPolicy.objects.filter(workload=workload).update(max_tool_calls=7)
    snapshot = policy_snapshots([workload.pk], at=timezone.now())[workload.pk]
    assert snapshot.limits.max_tool_calls == 7
    an_hour_ago = limits_at(snapshot, timezone.now() - timedelta(minutes=59))
    assert an_hour_ago.max_tool_calls == 7
    assert limits_at(snapshot, timezone.now() - timedelta(hours=2)).max_tool_calls == (
        workload.tier.max_tool_calls
    )


def _replayed_kinds(session) -> list[str]:
    """The kinds of finding a fresh replay of the (evaluated) session raises."""
    from governance.evaluation import store
    from governance.evaluation.services import findings_record, sessions_apply
    from workloads.models import Session

    with transaction.atomic():
        sessions = list(Session.objects.filter(pk=session.pk).only(*store.SESSION_FIELDS))
        events = store.session_events(sessions)
        assert events, "nothing to replay"
        drafts = sessions_apply(sessions, events, fresh=True)
        Finding.objects.filter(session=session).delete()  # so the replay's count as new
        return sorted(finding.kind for finding in findings_record(drafts))


def test_a_session_before_the_first_classification_is_not_held_to_the_tier(admin_user):
    """Unclassified, a workload has no limits (its use is flagged as such); classifying it
    later does not make its earlier sessions overrun the tier's."""
    from tests.factories import WorkloadFactory, tier
    from workloads.models import Workload
    from workloads.services import workload_classify

    draft = WorkloadFactory(created_at=timezone.now() - timedelta(days=1))
    internal_read = tier("internal-read")
    three_hours_ago = timezone.now() - timedelta(hours=3)
    session, events = _session_using(
        draft, internal_read.max_reasoning_tokens + 1, started_at=three_hours_ago
    )
    events_evaluate(**id_range(events))
    workload_classify(
        workload=Workload.objects.get(pk=draft.pk),
        tier=internal_read,
        by=admin_user,
        rationale="Reads tickets.",
    )
    kinds = _replayed_kinds(session)
    assert "unclassified_workload_use" in kinds and "budget_exceeded" not in kinds


def test_a_session_before_a_reclassification_keeps_the_override_of_its_time(admin_user):
    """An override the new tier no longer allows is dropped from the move on, not before."""
    from tests.factories import ClassifiedWorkloadFactory, tier
    from workloads.models import Workload
    from workloads.services import session_policy_update, workload_classify

    workload = ClassifiedWorkloadFactory(
        tier=tier("internal-act"), created_at=timezone.now() - timedelta(days=1)
    )
    budget = tier("internal-read").max_reasoning_tokens
    session_policy_update(workload=workload, by=admin_user, max_reasoning_tokens=budget + 10)
    session, events = _session_using(
        workload, budget + 1, started_at=timezone.now() - timedelta(minutes=1)
    )
    events_evaluate(**id_range(events))
    workload_classify(
        workload=Workload.objects.get(pk=workload.pk),
        tier=tier("internal-read"),
        by=admin_user,
        rationale="Reads only now.",
    )
    move = workload.session_limits_changes.latest("id")
    move.effective_from = timezone.now() - timedelta(seconds=30)  # after the session's start
    move.save(update_fields=["effective_from"])
    assert "budget_exceeded" not in _replayed_kinds(session)
    later, events = _session_using(workload, budget + 1, started_at=timezone.now())
    events_evaluate(**id_range(events))
    assert Finding.objects.filter(session=later, kind="budget_exceeded").exists()
