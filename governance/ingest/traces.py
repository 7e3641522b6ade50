"""OTLP traces and the sessions they belong to.

A span names its session with an attribute (`gen_ai.conversation.id`, `session.id` …), but
often only the root span does, and spans are exported when they end: the root of a long agent
run arrives last, after batches of its children. Those children are kept in a session keyed by
the trace id (`otlp.spans_to_records`). When a batch brings a span that names the session,
`traces_link` remembers the trace's session (`SessionTrace`, for spans still to come) and folds
the trace-keyed session into the named one: its events and findings move over, the session's
fields merge, and the merged session is evaluated again from the start, since a forbidden
combination may span both halves.

The link is committed first, then the fold runs in its own transaction, taking locks in the
evaluator's order (events, then sessions) so the two cannot deadlock. If a fold fails, the
events are stored, the client's retry of the batch (a 503) runs it again, and a beat task
(`traces_fold_pending`) folds whatever a link points at but was never folded, and what a
batch running alongside the link stored under the trace id after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Min, OuterRef, Subquery
from django.utils import timezone

from governance.findings.services import finding_merge
from governance.ingest.handoff import evaluation_enqueue_on_commit
from governance.ingest.records import EventRecord
from governance.models import ContainmentAction, Finding
from workloads.models import PendingEvaluation, Session, SessionTrace, UsageEvent, Workload
from workloads.services import session_approvals_end


def trace_of(event_id: str) -> str:
    """OTLP event ids are `<trace id>:<span id>[:suffix]`."""
    return event_id.split(":", 1)[0]


def trace_sessions_known(trace_ids: Iterable[str]) -> dict[tuple[int, str], str]:
    """(workload id, trace id) → the session key already linked to each of these traces."""
    rows = SessionTrace.objects.filter(trace_id__in=set(trace_ids)).values_list(
        "workload_id", "trace_id", "session__external_id"
    )
    return {(workload_id, trace): key for workload_id, trace, key in rows}


def trace_links(records: Iterable[EventRecord]) -> set[tuple[int, str, str]]:
    """(workload id, trace id, session key) for the events whose session a span named."""
    links = set()
    for record in records:
        trace = trace_of(record.event_id)
        if record.session_key != trace:
            links.add((record.workload_id, trace, record.session_key))
    return links


def traces_link(links: set[tuple[int, str, str]]) -> int:
    """Remember each trace's session and fold trace-keyed sessions into named ones; returns
    how many sessions were folded. A few queries per batch, whatever its number of traces,
    plus one transaction per fold."""
    if not links:
        return 0
    names = {key for _, _, key in links} | {trace for _, trace, _ in links}
    ids = {
        (workload_id, name): pk
        for workload_id, name, pk in Session.objects.filter(
            workload_id__in={w for w, _, _ in links}, external_id__in=names
        ).values_list("workload_id", "external_id", "id")
    }
    settled, pending = [], []
    for workload_id, trace, key in sorted(links):
        target, orphan = ids.get((workload_id, key)), ids.get((workload_id, trace))
        if target is None:
            continue
        link = SessionTrace(workload_id=workload_id, trace_id=trace, session_id=target)
        if orphan is not None and orphan != target:
            link.fold_pending = True
            pending.append((link, orphan))
        else:
            settled.append(link)
    SessionTrace.objects.bulk_create(settled, ignore_conflicts=True)
    # Committed before the folds: if one fails, the sweeper finds it.
    SessionTrace.objects.bulk_create(
        [link for link, _ in pending],
        update_conflicts=True,
        unique_fields=["workload", "trace_id"],
        update_fields=["fold_pending"],
    )
    return sum(
        _fold(link.workload_id, link.trace_id, orphan, link.session_id) for link, orphan in pending
    )


# How far back the sweeper (every minute) looks for trace-keyed sessions committed after
# their link: the race lasts milliseconds; the rest covers a sweeper that missed some runs.
STRANDED_LOOKBACK = timedelta(minutes=15)


def traces_fold_pending(*, limit: int = 500) -> int:
    """Fold what a committed link marks as not folded yet (a fold that failed or was cut
    short), then what recent settled links left behind; returns how many sessions were
    folded."""
    folded = 0
    pending = SessionTrace.objects.filter(fold_pending=True).values_list(
        "workload_id", "trace_id", "session_id"
    )[:limit]
    for workload_id, trace, target in list(pending):
        orphan = (
            Session.objects.filter(workload_id=workload_id, external_id=trace)
            .values_list("id", flat=True)
            .first()
        )
        folded += _fold(workload_id, trace, orphan, target)
    for workload_id, trace, orphan, target in traces_stranded(limit=limit):
        folded += _fold(workload_id, trace, orphan, target)
    return folded


def traces_stranded(*, limit: int = 500) -> list[tuple[int, str, int, int]]:
    """(workload id, trace id, trace-keyed session, named session) for recent links whose
    trace still has a session of its own: a batch of the trace's early spans that read the
    links before this one committed, and stored its spans under the trace id after the link
    found nothing to fold. One bounded query."""
    orphan = Session.objects.filter(
        workload_id=OuterRef("workload_id"), external_id=OuterRef("trace_id")
    ).exclude(pk=OuterRef("session_id"))
    rows = (
        SessionTrace.objects.filter(
            fold_pending=False, created_at__gte=timezone.now() - STRANDED_LOOKBACK
        )
        .annotate(orphan=Subquery(orphan.values("pk")[:1]))
        .filter(orphan__isnull=False)
        .values_list("workload_id", "trace_id", "orphan", "session_id")[:limit]
    )
    return list(rows)


@transaction.atomic
def _fold(workload_id: int, trace: str, orphan: int | None, target: int) -> int:
    done = SessionTrace.objects.filter(workload_id=workload_id, trace_id=trace)
    if orphan is None or orphan == target:
        done.update(fold_pending=False)
        return 0
    # Pending rows first, as the evaluator locks them (claim, then the session rows): taking
    # the two sessions' events off the list waits for a claim that holds some of them, and
    # keeps later claims off them until the fold commits and puts all of them back.
    PendingEvaluation.objects.filter(event__session_id__in=(orphan, target)).delete()
    UsageEvent.objects.filter(session_id=orphan).update(session_id=target)
    locked = {s.id: s for s in Session.objects.select_for_update().filter(id__in=(orphan, target))}
    if len(locked) != 2:  # folded meanwhile by a concurrent batch: undo the events' move
        transaction.set_rollback(True)
        return 0
    # The findings' containment records, then the workload, before any merge writes to the
    # audit chain: the order a lift and a reversal take (records, workload, audit) and the
    # one containment takes (workload, audit). Merging first, then locking the workload to
    # move a gate, deadlocked with a containment of the same workload.
    # The findings first, as a reviewer's containment takes its finding's row: a merge
    # moving a record onto a finding being contained meanwhile broke its uniqueness.
    list(
        Finding.objects.select_for_update()
        .filter(session_id__in=(orphan, target))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    list(
        ContainmentAction.objects.select_for_update(of=("self",))
        .filter(finding__session_id__in=(orphan, target))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    list(Workload.objects.select_for_update().filter(pk=workload_id).values_list("pk", flat=True))
    gated_on_the_spans = ContainmentAction.objects.filter(
        finding__session_id=orphan,
        action=ContainmentAction.Action.GATE_SESSIONS,
        reversed_at__isnull=True,
    ).exists()
    _findings_move(orphan, target)
    if gated_on_the_spans:
        _gate_follows_its_session(locked[target])
    merged = _merge(locked[target], locked[orphan])
    merged.evaluation_state = {}  # evaluated again from its first event
    merged.save()
    PendingEvaluation.objects.bulk_create(
        (
            PendingEvaluation(event_id=event_id)
            for event_id in UsageEvent.objects.filter(session_id=target)
            .values_list("id", flat=True)
            .iterator()
        ),
        ignore_conflicts=True,  # an event stored meanwhile is on the list already
        batch_size=5000,
    )
    locked[orphan].delete()
    done.update(fold_pending=False)
    span = UsageEvent.objects.filter(session_id=target).aggregate(low=Min("id"), high=Max("id"))
    if span["low"] is not None:
        evaluation_enqueue_on_commit(min_id=span["low"], max_id=span["high"])
    return 1


def _gate_follows_its_session(target: Session) -> None:
    """A finding raised on the spans before their session was named gated the workload: the
    named session is the one that misbehaved, so its approval ends too, as it would have had
    the finding been raised on it (findings.services._gate_sessions). The workload row first,
    as every change to approvals takes it."""
    workload = Workload.objects.select_for_update().get(pk=target.workload_id)
    session_approvals_end(
        workload=workload,
        by=None,
        reason=f"A finding on session {target.external_id} gated its workload's sessions.",
        sessions=[target.external_id],
    )


def _findings_move(orphan: int, target: int) -> None:
    """Findings move to the merged session under its dedupe prefix, so evaluating it again
    does not raise them twice. A finding the merged session already holds under that key
    (the same signal fired in both halves, e.g. one ungranted tool in two turns of a
    conversation) is merged into it rather than kept twice."""
    held = {f.dedupe_key: f for f in Finding.objects.filter(session_id=target)}
    old, new = f"s{orphan}:", f"s{target}:"
    moving = []
    for finding in Finding.objects.filter(session_id=orphan).order_by("id"):
        moved = finding.dedupe_key
        if moved.startswith(old):
            moved = (new + moved.removeprefix(old))[:200]
        if moved in held:
            finding_merge(duplicate=finding, into=held[moved])
            continue
        finding.session_id = target
        finding.dedupe_key = moved
        moving.append(finding)
    Finding.objects.bulk_update(moving, ["session", "dedupe_key"])


def _merge(target: Session, orphan: Session) -> Session:
    def earliest(*values):
        return min((v for v in values if v is not None), default=None)

    def latest(*values):
        return max((v for v in values if v is not None), default=None)

    target.started_at = earliest(target.started_at, orphan.started_at)
    target.last_event_at = latest(target.last_event_at, orphan.last_event_at)
    target.ended_at = latest(target.ended_at, orphan.ended_at)
    if orphan.original_request and (
        not target.original_request
        or (
            orphan.original_request_at
            and target.original_request_at
            and orphan.original_request_at < target.original_request_at
        )
    ):
        target.original_request = orphan.original_request
        target.original_request_at = orphan.original_request_at
    if orphan.final_action and (
        not target.final_action
        or (
            orphan.final_action_at
            and target.final_action_at
            and orphan.final_action_at > target.final_action_at
        )
    ):
        target.final_action = orphan.final_action
        target.final_action_at = orphan.final_action_at
    return target
