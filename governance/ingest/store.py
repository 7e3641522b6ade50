"""The write path: events and their sessions in one transaction, evaluation enqueued after.

PostgreSQL: COPY the batch into a temporary staging table, then one statement upserts the
sessions and inserts the events with ON CONFLICT DO NOTHING (the unique (workload, event_id)
is the idempotency key). Rows are inserted in key order so concurrent batches that share keys
or sessions lock them in the same order and cannot deadlock. SQLite: a plain bulk path.

Sessions take their fields from the batch: `original_request` from the earliest session_start
with content, `final_action` from the latest final_action with content — each replaced only
by one that happened earlier (a request) or later (an action), so a replayed or late batch
never overwrites newer with older — `started_at` the earliest event seen, `last_event_at` the
latest, `ended_at` the latest session_end.

An event id already stored (per workload) is not stored again, and the store says which
records those were (`StoreResult.repeats`) and whether each is the same event: the same
session, type, occurred_at and tool. That is a replay (a retry): accepted, the stored copy
kept, its content, counts and attributes as first stored. Anything else is another event
reusing the id, which the front door rejects rather than count as stored. (An OTLP span's
session may move from its trace id to the session a later span names, see `traces`: for
OTLP either side being the trace id counts as the same session.) The merge returns how many
rows it inserted; only when that is fewer than the records are the stored rows compared, one
query for the ids that conflicted, so a batch of new events pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import msgspec
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from governance.ingest.handoff import evaluation_enqueue_on_commit
from governance.ingest.records import EventRecord, EventRow
from workloads.models import Session, UsageEvent

STAGE = "mandate_ingest_stage"
_COLUMNS = ", ".join(EventRecord._fields)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE} (
    workload_id bigint, session_key text, event_id text, type text, occurred_at timestamptz,
    tool text, tool_call_id text, arguments_hash text, content text, input_tokens integer,
    output_tokens integer, reasoning_tokens integer, duration_ms integer, attributes text
) ON COMMIT DELETE ROWS;
DELETE FROM {STAGE};
"""
_COPY = f"COPY {STAGE} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# Binary COPY: no text formatting of timestamps and numbers on either side.
_STAGE_TYPES = [
    "int8", "text", "text", "text", "timestamptz", "text", "text", "text", "text",
    "int4", "int4", "int4", "int4", "text",
]  # fmt: skip
_MERGE = f"""
WITH batch_sessions AS (
    SELECT workload_id, session_key,
        (array_agg(content ORDER BY occurred_at)
            FILTER (WHERE type = 'session_start' AND content <> ''))[1] AS original_request,
        min(occurred_at) FILTER (WHERE type = 'session_start' AND content <> '')
            AS original_request_at,
        (array_agg(content ORDER BY occurred_at DESC)
            FILTER (WHERE type = 'final_action' AND content <> ''))[1] AS final_action,
        max(occurred_at) FILTER (WHERE type = 'final_action' AND content <> '')
            AS final_action_at,
        min(occurred_at) AS started_at,
        max(occurred_at) AS last_event_at,
        max(occurred_at) FILTER (WHERE type = 'session_end') AS ended_at
    FROM {STAGE} st
    -- Only events not stored before shape their session: a replay whose content differs
    -- from the stored event must not change the session the stored one describes.
    WHERE NOT EXISTS (
        SELECT 1 FROM workloads_usageevent e
        WHERE e.workload_id = st.workload_id AND e.event_id = st.event_id
    )
    GROUP BY workload_id, session_key
), sessions AS (
    INSERT INTO workloads_session AS s (
        workload_id, external_id, source, original_request, original_request_at, final_action,
        final_action_at, started_at, last_event_at, ended_at, created_at, evaluation_state
    )
    SELECT workload_id, session_key, %(source)s, coalesce(original_request, ''),
        original_request_at, coalesce(final_action, ''), final_action_at, started_at,
        last_event_at, ended_at, %(now)s, '{{}}'::jsonb
    FROM batch_sessions ORDER BY workload_id, session_key
    ON CONFLICT (workload_id, external_id) DO UPDATE SET
        -- An earlier request, or a later action, wins; a value of unknown time (stored
        -- before these columns existed) keeps the old rule: a request stays, an action goes.
        original_request = CASE
            WHEN EXCLUDED.original_request <> '' AND (s.original_request = ''
                OR EXCLUDED.original_request_at < s.original_request_at)
            THEN EXCLUDED.original_request ELSE s.original_request END,
        original_request_at = CASE
            WHEN EXCLUDED.original_request <> '' AND (s.original_request = ''
                OR EXCLUDED.original_request_at < s.original_request_at)
            THEN EXCLUDED.original_request_at ELSE s.original_request_at END,
        final_action = CASE
            WHEN EXCLUDED.final_action <> '' AND (s.final_action_at IS NULL
                OR EXCLUDED.final_action_at >= s.final_action_at)
            THEN EXCLUDED.final_action ELSE s.final_action END,
        final_action_at = CASE
            WHEN EXCLUDED.final_action <> '' AND (s.final_action_at IS NULL
                OR EXCLUDED.final_action_at >= s.final_action_at)
            THEN EXCLUDED.final_action_at ELSE s.final_action_at END,
        started_at = LEAST(s.started_at, EXCLUDED.started_at),
        last_event_at = GREATEST(s.last_event_at, EXCLUDED.last_event_at),
        ended_at = GREATEST(s.ended_at, EXCLUDED.ended_at)
    RETURNING s.id, s.workload_id, s.external_id
), inserted AS (
    INSERT INTO workloads_usageevent (
        workload_id, session_id, event_id, type, occurred_at, received_at, tool, tool_call_id,
        arguments_hash, content, input_tokens, output_tokens, reasoning_tokens, duration_ms,
        attributes
    )
    SELECT st.workload_id, sessions.id, st.event_id, st.type, st.occurred_at, %(now)s, st.tool,
        st.tool_call_id, st.arguments_hash, st.content, st.input_tokens, st.output_tokens,
        st.reasoning_tokens, st.duration_ms, st.attributes::jsonb
    FROM {STAGE} st
    JOIN sessions ON sessions.workload_id = st.workload_id
                 AND sessions.external_id = st.session_key
    ORDER BY st.workload_id, st.event_id
    ON CONFLICT (workload_id, event_id) DO NOTHING
    RETURNING id
)
SELECT min(id), max(id), count(*) FROM inserted
"""
# The records whose id was stored before this merge: the rows the merge inserted bear its
# `now` and an id in its range (a concurrent batch inserting the same key at the same
# microsecond is not a case worth a column).
_REPEATS = f"""
SELECT st.workload_id, st.event_id, s.external_id, e.type, e.occurred_at, e.tool
FROM {STAGE} st
JOIN workloads_usageevent e ON e.workload_id = st.workload_id AND e.event_id = st.event_id
JOIN workloads_session s ON s.id = e.session_id
WHERE NOT (e.received_at = %(now)s AND e.id BETWEEN %(low)s AND %(high)s)
"""
# What makes a stored event the same as a record with its id: (session key, type, time, tool).
StoredIdentity = tuple[str, str, datetime, str]


class Repeat(NamedTuple):
    """A record whose event id was already stored, so it was not stored again."""

    position: int  # in the records given to the store
    problem: str  # "" for the same event (a replay); else why it is another event


def _repeat(position: int, record: EventRow, stored: StoredIdentity, source: str) -> Repeat:
    session, type_, occurred_at, tool = stored
    differ = []
    if session != record[1] and not (
        source == Session.Source.OTLP and record[2].split(":", 1)[0] in (session, record[1])
    ):
        differ.append("session")
    if type_ != record[3]:
        differ.append("type")
    if occurred_at != record[4]:
        differ.append("occurred_at")
    if tool != record[5]:
        differ.append("tool")
    if not differ:
        return Repeat(position, "")
    fields = " and ".join([", ".join(differ[:-1]), differ[-1]] if len(differ) > 1 else differ)
    return Repeat(
        position,
        f"The event id is already stored for a different event (its {fields} "
        f"{'differ' if len(differ) > 1 else 'differs'}): a new event needs a new id, and a "
        "retry repeats the event as first sent.",
    )


@dataclass(frozen=True, slots=True)
class StoreResult:
    """New rows only: a replayed batch stores nothing (min_id/max_id None). `repeats`: the
    records not stored because their id was, in record order."""

    stored: int
    min_id: int | None
    max_id: int | None
    repeats: tuple[Repeat, ...] = ()


def usage_events_store(*, records: Sequence[EventRow], source: str) -> StoreResult:
    """Store the events and upsert their sessions, in one transaction; an event whose id is
    stored already is not stored again, and comes back in `repeats`. The records' event ids
    are unique per workload (the front doors see to it).

    After commit, one evaluation task is enqueued for the id range of the new events.
    """
    if not records:
        return StoreResult(0, None, None)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            result = _store_postgresql(records, source)
        else:
            result = _store_generic(records, source)
        if result.min_id is not None and result.max_id is not None:  # None: nothing new stored
            evaluation_enqueue_on_commit(min_id=result.min_id, max_id=result.max_id)
    return result


def _store_postgresql(records: Sequence[EventRow], source: str) -> StoreResult:
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_STAGE)
        with cursor.copy(_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            for record in records:
                copy.write_row(record)
        now = timezone.now()
        cursor.execute(_MERGE, {"source": source, "now": now})
        min_id, max_id, stored = cursor.fetchone()
        if stored == len(records):
            return StoreResult(stored, min_id, max_id)
        ours = {"now": now, "low": min_id or 0, "high": -1 if max_id is None else max_id}
        cursor.execute(_REPEATS, ours)
        found = {(w, e): (s, t, at, tool) for w, e, s, t, at, tool in cursor.fetchall()}
    repeats = tuple(
        _repeat(position, record, found[stored_key], source)
        for position, record in enumerate(records)
        if (stored_key := (record[0], record[2])) in found
    )
    return StoreResult(stored, min_id, max_id, repeats)


def _store_generic(rows: Sequence[EventRow], source: str) -> StoreResult:
    """SQLite (the embedded default): the same semantics with the ORM, no speed target."""
    now = timezone.now()
    wanted = {(r[0], r[2]) for r in rows}  # (workload_id, event_id)
    existing: dict[tuple[int, str], StoredIdentity] = {}
    for workload_id in {w for w, _ in wanted}:
        ids = [e for w, e in wanted if w == workload_id]
        for event_id, *identity in UsageEvent.objects.filter(
            workload_id=workload_id, event_id__in=ids
        ).values_list("event_id", "session__external_id", "type", "occurred_at", "tool"):
            existing[workload_id, event_id] = tuple(identity)  # type: ignore[assignment]
    repeats = tuple(
        _repeat(position, row, existing[stored_key], source)
        for position, row in enumerate(rows)
        if (stored_key := (row[0], row[2])) in existing
    )
    # Only events not stored before (the first copy of each) shape their session, as on
    # PostgreSQL.
    fresh: list[EventRecord] = []
    seen: set[tuple[int, str]] = set()
    for r in map(EventRecord._make, rows):
        pair = (r.workload_id, r.event_id)
        if pair not in existing and pair not in seen:
            seen.add(pair)
            fresh.append(r)
    by_session: dict[tuple[int, str], list[EventRecord]] = {}
    for record in fresh:
        by_session.setdefault((record.workload_id, record.session_key), []).append(record)
    session_ids = {}
    for (workload_id, key), events in sorted(by_session.items()):
        session, _ = Session.objects.get_or_create(
            workload_id=workload_id,
            external_id=key,
            defaults={"source": source, "created_at": now},
        )
        _session_merge(session, events)
        session_ids[workload_id, key] = session.pk

    new: list[UsageEvent] = []
    for r in fresh:
        new.append(
            UsageEvent(
                workload_id=r.workload_id,
                session_id=session_ids[r.workload_id, r.session_key],
                event_id=r.event_id,
                type=r.type,
                occurred_at=r.occurred_at,
                received_at=now,
                tool=r.tool,
                tool_call_id=r.tool_call_id,
                arguments_hash=r.arguments_hash,
                content=r.content,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                reasoning_tokens=r.reasoning_tokens,
                duration_ms=r.duration_ms,
                attributes=msgspec.json.decode(r.attributes),
            )
        )
    if not new:
        return StoreResult(0, None, None, repeats)
    UsageEvent.objects.bulk_create(new, ignore_conflicts=True)
    span = UsageEvent.objects.filter(
        received_at=now,
        workload_id__in={e.workload_id for e in new},
        event_id__in=[e.event_id for e in new],
    ).aggregate(low=Min("pk"), high=Max("pk"))
    return StoreResult(len(new), span["low"], span["high"], repeats)


def _session_merge(session: Session, events: list[EventRecord]) -> None:
    starts = sorted((e.occurred_at, e.content) for e in events if e.type == "session_start")
    finals = sorted((e.occurred_at, e.content) for e in events if e.type == "final_action")
    ends = [e.occurred_at for e in events if e.type == "session_end"]
    times = [e.occurred_at for e in events]
    first = next(((at, c) for at, c in starts if c), None)
    if first and (
        not session.original_request
        or (session.original_request_at and first[0] < session.original_request_at)
    ):
        session.original_request_at, session.original_request = first
    last = next(((at, c) for at, c in reversed(finals) if c), None)
    if last and (session.final_action_at is None or last[0] >= session.final_action_at):
        session.final_action_at, session.final_action = last
    session.started_at = min(filter(None, [session.started_at, min(times)]))
    session.last_event_at = max(filter(None, [session.last_event_at, max(times)]))
    if ends:
        session.ended_at = max(filter(None, [session.ended_at, max(ends)]))
    session.save(
        update_fields=[
            "original_request",
            "original_request_at",
            "final_action",
            "final_action_at",
            "started_at",
            "last_event_at",
            "ended_at",
        ]
    )
