"""Evaluating stored usage events: claim, evaluate, record findings, mark done — one
transaction per bounded batch, so a killed worker loses nothing and a redelivered task
duplicates nothing.

- Claim: the range's pending rows (workloads.PendingEvaluation) are locked FOR UPDATE in id
  order and deleted in the same statement (the transaction's rollback puts them back); a
  concurrent or redelivered run waits, then finds them gone and skips those events.
- Sessions are locked in id order, so two batches of one session apply one after the other
  to its incremental state.
- Findings carry a unique dedupe key (session + detector key) and are inserted with
  ON CONFLICT DO NOTHING.
- Set-based: a batch costs a constant number of statements (claim, sessions, states,
  findings; see `store`), and each worker process keeps the compiled policy snapshots while
  the policy version holds (`snapshot.policy_snapshots_cached`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.audit import audit_record
from governance.evaluation import store
from governance.evaluation.detectors import EventData, FindingDraft, PolicySnapshot, limits_at
from governance.evaluation.engine import evaluate_session_batch, evaluate_session_clock
from governance.evaluation.scoring import scorer_from_settings
from governance.evaluation.snapshot import BEGINNING, policy_snapshots, policy_snapshots_cached
from governance.ingest.handoff import evaluation_enqueue  # the one publisher of the task
from governance.models import Finding
from governance.models.findings import SEVERITY_RANK
from workloads.models import PendingEvaluation, Session

# A locked session as evaluation sees it: a store.SessionRow, or a Session instance.
SessionLike = store.SessionRow | Session


@dataclass
class EvaluationResult:
    events: int = 0
    findings: int = 0

    def __iadd__(self, other: EvaluationResult) -> EvaluationResult:
        self.events += other.events
        self.findings += other.findings
        return self


def dedupe_key(session_id: int, draft: FindingDraft) -> str:
    return f"s{session_id}:{draft.key}"[:200]


# Severities a tier's rule may contain (high: sessions need approval; critical: more).
CONTAINABLE = ("high", "critical")


def findings_record(
    drafts: Sequence[tuple[SessionLike, FindingDraft]], *, locked_early: set[int] | None = None
) -> list[Finding]:
    """Insert findings once each (ON CONFLICT DO NOTHING); return the ones that are new.

    Must run in the transaction that holds the sessions' locks: that is what makes the
    "which are new" answer exact. `locked_early`: the workloads the caller locked before it
    took any grant; one it did not (its tier changed to a containing one meanwhile) is
    locked without waiting, since waiting while holding grants can close a cycle.
    """
    if not drafts:
        return []
    candidates = {}
    for session, draft in drafts:
        key = dedupe_key(session.id, draft)
        candidates[key] = Finding(
            kind=draft.kind,
            severity=draft.severity,
            severity_rank=SEVERITY_RANK[draft.severity],
            workload_id=session.workload_id,
            session_id=session.id,
            tool=draft.tool[:80],
            summary=draft.summary[:300],
            evidence=list(draft.evidence),
            details=dict(draft.details),
            dedupe_key=key,
            occurred_at=draft.occurred_at,
        )
    new = store.findings_insert(list(candidates.values()))
    if new:
        raised = [
            {"key": f.dedupe_key, "kind": f.kind, "severity": f.severity, "tool": f.tool}
            for f in new
        ]
        transaction.on_commit(partial(_audit_raised, raised))
    # The tier may contain high findings (sessions need approval) and critical ones.
    containable = [f.dedupe_key for f in new if f.severity in CONTAINABLE]
    if containable:
        from governance.findings.services import (
            containment_prelock,
            finding_contain,
            tier_contains,
        )

        found = Finding.objects.filter(dedupe_key__in=containable).select_related(
            "workload__tier", "session"
        )
        acting = sorted(
            (f for f in found if tier_contains(f)), key=lambda f: (f.workload_id, -f.id)
        )
        # Every workload to contain, locked in id order before the first containment: one
        # order for all workers, and containment_reverse takes a workload's row first too.
        to_contain = {f.workload_id for f in acting}
        if locked_early is None:
            store.workloads_lock(to_contain)
        else:
            store.workloads_lock(to_contain - locked_early, nowait=True)
        containment_prelock(acting)
        for finding in acting:
            finding_contain(finding=finding)
    return new


def _audit_raised(raised: list[dict]) -> None:
    """One audit event per evaluation batch that raised findings, written after the batch
    commits and in its own short transaction: taking the audit chain's lock inside the
    evaluation's transaction would serialise the workers on it."""
    with transaction.atomic():
        audit_record(
            by=None,
            action="findings.raise",
            object_type="governance.finding",
            object_id=raised[0]["key"][:64],
            object_repr=f"{len(raised)} finding{'s' if len(raised) != 1 else ''} raised",
            after={"findings": raised},
        )


def sessions_apply(
    sessions: Sequence[SessionLike],
    events: dict[int, list[EventData]],
    *,
    fresh: bool = False,
    policy_version: int | None = None,
) -> list[tuple[SessionLike, FindingDraft]]:
    """Run the evaluator over each locked session's new events and save the new states.

    `fresh` replays from an empty state (re-evaluation) instead of the stored one, under a
    freshly compiled policy (re-evaluation is what one runs after a change).
    """
    workload_ids = {s.workload_id for s in sessions}
    if fresh:
        snapshots = policy_snapshots(workload_ids, at=timezone.now())
    else:
        snapshots = policy_snapshots_cached(workload_ids, at=timezone.now(), version=policy_version)
    scorer = scorer_from_settings()
    gated = [s for s in sessions if snapshots[s.workload_id].session_gates]
    approvals = store.session_approval_windows(gated)
    waiting = sessions_waiting_for_name([s for s in gated if trace_shaped(s)], snapshots)
    drafts = []
    states = []
    for session in sessions:
        policy = snapshots[session.workload_id]
        if session.id in waiting:
            # Spans waiting for the span that names their session: no approval can name
            # them yet. The gate is checked when the session is folded and evaluated again,
            # or, if no span names it in time, by `unnamed_sessions_check`.
            policy = replace(policy, session_gates=())
        state, found = evaluate_session_batch(
            None if fresh else session.evaluation_state,
            events.get(session.id, ()),
            policy,
            request=session.original_request,
            started_at=session.started_at,
            scorer=scorer,
            session=session.external_id,
            approvals=approvals.get((session.workload_id, session.external_id), ()),
        )
        session.evaluation_state = state
        states.append((session.id, state))
        drafts += [(session, draft) for draft in found]
    store.session_states_save(states)
    return drafts


_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


def naming_deadline(session: SessionLike, policy: PolicySnapshot) -> datetime:
    """When the span naming an OpenTelemetry session must have arrived: the run's root span
    ends with the run, within the session window, and is exported within the lateness
    allowed. Counted from when Mandate first heard of the session, or the start its spans
    claim if earlier: a start dated ahead cannot put the deadline off. Until then its spans
    wait for their name; after it, they are what they are."""
    started = min(session.created_at, session.started_at or session.created_at)
    window = limits_at(policy, started).max_session_seconds or 3600
    return started + timedelta(seconds=window) + policy.max_lateness


def sessions_waiting_for_name(
    sessions: Sequence[SessionLike],
    snapshots: dict[int, PolicySnapshot],
    now=None,
    unnamed: set[int] | None = None,
) -> set[int]:
    """Of these trace-keyed sessions, the ones whose spans wait for their name (two queries;
    one if the caller read `unnamed`): no span has named them yet and their deadline has not
    passed, or a span has named them and the fold into the named session is pending or
    under way."""
    now = now or timezone.now()
    if unnamed is None:
        unnamed = store.sessions_unnamed(sessions)
    if not unnamed:
        return set()
    being_named = store.sessions_being_named([s for s in sessions if s.id in unnamed])
    return {
        s.id
        for s in sessions
        if s.id in unnamed
        and (s.id in being_named or now < naming_deadline(s, snapshots[s.workload_id]))
    }


def trace_shaped(session: SessionLike) -> bool:
    """An OpenTelemetry session whose id could be a trace id: one still waiting for the span
    that names it, unless a trace link names it (store.sessions_unnamed)."""
    return session.source == Session.Source.OTLP and bool(_TRACE_ID.fullmatch(session.external_id))


def tool_uses(
    sessions: Sequence[SessionLike], events: dict[int, list[EventData]]
) -> dict[tuple[int, str], datetime]:
    """(workload id, tool) → the latest call among these events, each no later than it
    arrived: a clock running ahead must not keep a grant off the unused list."""
    latest: dict[tuple[int, str], datetime] = {}
    for session in sessions:
        for event in events.get(session.id, ()):
            if event.type == "tool_call" and event.tool:
                key = (session.workload_id, event.tool)
                at = event.occurred_at
                if event.received_at is not None and event.received_at < at:
                    at = event.received_at
                if key not in latest or at > latest[key]:
                    latest[key] = at
    return latest


def _evaluate_chunk(
    min_id: int, max_id: int, limit: int, *, skip_locked: bool = False
) -> tuple[EvaluationResult, int | None]:
    """Evaluate up to `limit` unevaluated events of the range; return the last id claimed.

    One transaction: claim (take off the pending list), lock the sessions, evaluate, save the
    states, insert the findings. Any failure rolls all of it back for the next run.
    """
    with transaction.atomic():
        claim = store.events_claim(
            min_id=min_id, max_id=max_id, limit=limit, skip_locked=skip_locked
        )
        if not claim.events:
            return EvaluationResult(), None
        by_session: dict[int, list[EventData]] = defaultdict(list)
        for session_id, event in claim.events:
            by_session[session_id].append(event)
        sessions = store.sessions_lock(by_session)
        drafts = sessions_apply(sessions, by_session, policy_version=claim.policy_version)
        # Workloads, then grants, then the audit chain and the policy version: the order an
        # approval takes (workload, the grants it supersedes, its audit) and a console revoke
        # (grant, then chain and version). The workloads findings_record may contain (their
        # tier's rule contains drafts of these severities) are locked before the used grants'
        # last use moves; the others are not locked at all.
        locked = store.workloads_lock_containing(
            {
                (session.workload_id, draft.severity)
                for session, draft in drafts
                if draft.severity in CONTAINABLE
            }
        )
        store.tool_uses_record(tool_uses(sessions, by_session))
        new = findings_record(drafts, locked_early=locked)
        result = EvaluationResult(events=len(claim.events), findings=len(new))
        return result, claim.events[-1][1].id


def events_evaluate(*, min_id: int, max_id: int, batch: int | None = None) -> EvaluationResult:
    """Evaluate the unevaluated events with ids in [min_id, max_id], in bounded transactions.

    Idempotent: events already evaluated (by this or any other run) are skipped.

    Batches stored concurrently get interleaved ids, so the ranges of concurrent tasks
    overlap. The first pass skips events another run holds (both workers keep working instead
    of queueing on each other's locks); the second waits for whatever is still unevaluated in
    the range — usually nothing, or what a run that then failed or died was holding — so a
    task never ends with its range half done.
    """
    batch = batch or settings.MANDATE_EVALUATION_BATCH
    result = EvaluationResult()
    for skip_locked in (True, False):
        if not skip_locked and not store.events_pending(min_id=min_id, max_id=max_id):
            break
        cursor = min_id
        while cursor <= max_id:
            chunk, last_id = _evaluate_chunk(cursor, max_id, batch, skip_locked=skip_locked)
            if last_id is None:
                break
            result += chunk
            cursor = last_id + 1
            if skip_locked and chunk.events < batch:
                break  # nothing more to take without waiting; the second pass checks
    return result


def unevaluated_ranges(*, grace_seconds: int, limit: int, batch: int) -> list[tuple[int, int]]:
    """Id ranges of events left unevaluated for longer than `grace_seconds` (oldest first).

    Walks the pending list (small: what evaluation has not reached yet) in id order, joined to
    the events for their arrival time; each range holds at most `batch` pending events.
    """
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    ids = list(
        PendingEvaluation.objects.filter(event__received_at__lt=cutoff)
        .order_by("event_id")
        .values_list("event_id", flat=True)[:limit]
    )
    return [
        (chunk[0], chunk[-1]) for chunk in (ids[i : i + batch] for i in range(0, len(ids), batch))
    ]


def unevaluated_sweep(
    *, grace_seconds: int | None = None, limit: int = 50_000, batch: int | None = None
) -> int:
    """Enqueue evaluation for what was stored but never evaluated; returns the tasks sent."""
    grace = settings.MANDATE_SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    batch = batch or settings.MANDATE_EVALUATION_BATCH
    sent = 0
    for low, high in unevaluated_ranges(grace_seconds=grace, limit=limit, batch=batch):
        if not evaluation_enqueue(min_id=low, max_id=high):
            break
        sent += 1
    return sent


def pending_orphans_sweep(*, limit: int = 50_000) -> int:
    """Drop pending rows whose event was deleted outside the ORM (the list has no database
    foreign key); returns how many. Nothing else would: a claim only reaches rows inside a
    range drawn from existing events. Hourly, since it reads the whole pending list and
    only a hand-made delete leaves such rows."""
    return store.pending_orphans_delete(limit=limit)


UNNAMED_LOOKBACK = timedelta(days=7)
NAME_WAITED = "name_waited"  # in a session's evaluation state: checked past its deadline


def unnamed_sessions_check(*, now=None, limit: int = 100) -> int:
    """OpenTelemetry sessions on workloads whose sessions have needed approval that no span
    named by their deadline (`naming_deadline`): evaluate them again, now with the session
    gate, which their spans skipped while they waited. Without this, a runtime whose spans
    never name their session would never be checked against the gate.

    Each workload's candidates are the sessions Mandate heard of before its longest possible
    deadline (and within UNNAMED_LOOKBACK of it), so sessions still running are neither read
    nor locked, and cannot hold back another workload's. Only the candidates are locked,
    skipping any an evaluation batch holds. Returns the findings raised."""
    now = now or timezone.now()
    gated = store.workloads_ever_gated()
    if not gated:
        return 0
    snapshots = policy_snapshots_cached(gated, at=now)
    lateness = timedelta(seconds=settings.MANDATE_EVENT_MAX_LATENESS_SECONDS)
    due_before = Q()
    for workload_id, policy in snapshots.items():
        due_before |= _past_naming_deadline(workload_id, policy, now, lateness)
    if not due_before:  # an empty Q would match every session
        return 0
    candidates = (
        Session.objects.filter(due_before, source=Session.Source.OTLP)
        .filter(external_id__regex=f"^{_TRACE_ID.pattern}$")
        .exclude(evaluation_state__has_key=NAME_WAITED)
        # Those whose fold is pending wait for it: left in, a backlog of them fills the batch.
        .exclude(store.being_named_elsewhere())
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    with transaction.atomic():
        sessions = list(
            Session.objects.select_for_update(skip_locked=True)
            .filter(id__in=list(candidates))
            .order_by("id")
            .only(*store.SESSION_FIELDS)
        )
        unnamed = store.sessions_unnamed(sessions)
        waiting = sessions_waiting_for_name(sessions, snapshots, now, unnamed)
        due = [s for s in sessions if s.id in unnamed and s.id not in waiting]
        drafts = sessions_apply(due, store.session_events(due), fresh=True) if due else []
        # Named ones were judged when their name arrived; due ones now. Those still being
        # named (their fold is pending) are looked at again next time.
        store.session_states_save(
            [
                (s.id, {**s.evaluation_state, NAME_WAITED: True})
                for s in sessions
                if s.id not in waiting
            ]
        )
        return len(findings_record(drafts))


def _past_naming_deadline(workload_id: int, policy: PolicySnapshot, now, lateness) -> Q:
    """This workload's sessions whose naming deadline has passed, within UNNAMED_LOOKBACK of
    it: one range of when Mandate heard of them per period of the workload's limits, each
    with the window of its period (as naming_deadline reads it), so a window the workload
    had once and no longer has does not hold the check back."""
    periods = policy.limit_changes or ((BEGINNING, policy.limits),)
    due = Q()
    for n, (since, limits) in enumerate(periods):
        until = periods[n + 1][0] if n + 1 < len(periods) else None
        cutoff = now - timedelta(seconds=limits.max_session_seconds or 3600) - lateness
        start = max(since, cutoff - UNNAMED_LOOKBACK)
        end = cutoff if until is None else min(until, cutoff)
        if start < end:
            due |= Q(workload_id=workload_id, created_at__gte=start, created_at__lt=end)
    return due


def open_sessions_check(*, now=None, idle_after_seconds: int = 60, limit: int = 500) -> int:
    """Sessions that never sent an end: raise overrun and idle-timeout findings by the clock.

    Reads the `open_session_activity` partial index; a session marked `timed_out` is skipped
    until it reports again. Returns the findings raised.
    """
    now = now or timezone.now()
    raised = 0
    with transaction.atomic():
        sessions = list(
            Session.objects.select_for_update(skip_locked=True)
            .filter(ended_at=None, last_event_at__lt=now - timedelta(seconds=idle_after_seconds))
            .filter(~Q(evaluation_state__has_key="timed_out"))
            .order_by("last_event_at")
            .only("id", "workload_id", "evaluation_state", "started_at", "last_event_at")[:limit]
        )
        snapshots = policy_snapshots_cached({s.workload_id for s in sessions}, at=now)
        drafts, states = [], []
        for session in sessions:
            state, found = evaluate_session_clock(
                session.evaluation_state,
                now,
                snapshots[session.workload_id],
                started_at=session.started_at,
                last_event_at=session.last_event_at,
            )
            session.evaluation_state = state
            states.append((session.id, state))
            drafts += [(session, draft) for draft in found]
        store.session_states_save(states)
        raised = len(findings_record(drafts))
    return raised
