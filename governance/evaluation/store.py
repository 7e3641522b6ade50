"""Row access for the evaluation service: set-based SQL on PostgreSQL, the ORM elsewhere.

Only the service (`governance.evaluation.services`) calls these, inside its transaction. Each
function is one statement on PostgreSQL whatever the batch size:

- `events_claim`: lock the range's pending rows in id order, delete them and return their
  events' columns the detectors read (DELETE … (SELECT … FOR UPDATE) … RETURNING, then the
  events by primary key). A concurrent or redelivered run waits on the locks, then skips what
  was claimed meanwhile; a rollback puts the pending rows back.
- `sessions_lock`: the sessions' rows, locked in id order, state as text (decoded by msgspec).
- `session_states_save`: every session's new state in one UPDATE … FROM unnest(…).
- `findings_insert`: INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING the new rows, so
  "which are new" is the database's answer, not a separate read.

SQLite (the embedded default, no speed target) runs the same steps with the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import msgspec
import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q

from governance.evaluation.detectors import EventData
from governance.models import AuditEvent, Finding
from governance.policy_version import policy_version_current
from workloads.models import (
    Entitlement,
    PendingEvaluation,
    Session,
    SessionApproval,
    SessionTrace,
    UsageEvent,
    Workload,
)

# The order of EventData's fields: rows become EventData(*row) without a dict per row.
EVENT_COLUMNS = (
    "id",
    "type",
    "occurred_at",
    "tool",
    "arguments_hash",
    "content",
    "reasoning_tokens",
    "duration_ms",
    "received_at",
)
_EVENT_SELECT = ", ".join(f"e.{column}" for column in EVENT_COLUMNS)

# The claim deletes the range's pending rows (workloads.PendingEvaluation) and returns their
# events. ANY(ARRAY(…)): the claimed ids drive index scans on the primary keys, whatever the
# tables' sizes (a join against the subquery may be planned as a scan of the whole table).
# The policy version rides along (evaluation's snapshot cache is keyed on it): one round trip
# fewer per batch, and read in the same statement as the events it will judge.
_CLAIM = """
WITH claimed AS (
    DELETE FROM workloads_pendingevaluation p
    WHERE p.event_id = ANY(ARRAY(
        SELECT event_id FROM workloads_pendingevaluation
        WHERE event_id BETWEEN %s AND %s
        ORDER BY event_id LIMIT %s
        FOR UPDATE{skip}
    ))
    RETURNING p.event_id
)
SELECT e.session_id, {columns}, (SELECT version FROM governance_policystate WHERE id = 1)
FROM workloads_usageevent e
WHERE e.id = ANY(ARRAY(SELECT event_id FROM claimed))
"""
_CLAIM_WAIT = _CLAIM.format(skip="", columns=_EVENT_SELECT)
_CLAIM_SKIP_LOCKED = _CLAIM.format(skip=" SKIP LOCKED", columns=_EVENT_SELECT)
_SESSIONS = """
SELECT id, workload_id, evaluation_state::text, original_request, started_at, external_id,
       source, created_at
FROM workloads_session WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""
# Binary parameters (%b): the states go over as they are, no quoting of each in Python.
_SAVE_STATES = """
UPDATE workloads_session s SET evaluation_state = v.state::jsonb
FROM unnest(%b::bigint[], %b::text[]) AS v(id, state)
WHERE s.id = v.id
"""
# The active grant of each (workload, tool slug) moves its last use forward, to the hour:
# a grant is rewritten at most once an hour however busy it is (each rewrite touches every
# index of the table). Rows are locked in id order first, so two workers whose batches share
# grants lock them in one order and cannot deadlock (an UPDATE alone locks in whatever order
# its plan meets the rows). A call before the grant began was made under an earlier grant.
_TOOL_USES = """
WITH due AS (
    SELECT e.id, v.at
    FROM unnest(%b::bigint[], %b::text[], %b::timestamptz[]) AS v(workload_id, tool, at)
    JOIN workloads_tool t ON t.slug = v.tool
    JOIN workloads_entitlement e ON e.workload_id = v.workload_id AND e.tool_id = t.id
    WHERE e.status = 'active' AND v.at >= e.valid_from
      AND (e.last_used_at IS NULL OR e.last_used_at < v.at - interval '1 hour')
    ORDER BY e.id
    FOR UPDATE OF e
)
UPDATE workloads_entitlement e SET last_used_at = due.at FROM due WHERE e.id = due.id
"""
_PENDING = """
SELECT EXISTS (SELECT 1 FROM workloads_pendingevaluation WHERE event_id BETWEEN %s AND %s)
"""

_decode = msgspec.json.Decoder(dict).decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class SessionRow:
    """What evaluation reads of a session (a Session instance fits the same shape)."""

    id: int
    workload_id: int
    evaluation_state: dict
    original_request: str
    started_at: datetime | None
    external_id: str
    source: str
    created_at: datetime  # when Mandate first heard of it (its own clock)


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


@dataclass(slots=True)
class Claim:
    events: list[tuple[int, EventData]]  # (session id, event), in id order
    policy_version: int | None  # as read with the events (None: nothing claimed)


def events_claim(*, min_id: int, max_id: int, limit: int, skip_locked: bool = False) -> Claim:
    """Up to `limit` pending events of [min_id, max_id], lowest ids first, taken off the pending
    list (in the caller's transaction) and returned as (session id, EventData), with the policy
    version.

    `skip_locked` passes over events another transaction holds instead of waiting for it.
    """
    if _postgresql():
        sql = _CLAIM_SKIP_LOCKED if skip_locked else _CLAIM_WAIT
        with connection.cursor() as cursor:
            cursor.execute(sql, [min_id, max_id, limit])
            rows = cursor.fetchall()
        if not rows:
            return Claim([], None)
        rows.sort(key=lambda row: row[1])
        return Claim([(row[0], EventData(*row[1:-1])) for row in rows], rows[0][-1] or 1)
    ids = list(
        PendingEvaluation.objects.select_for_update(skip_locked=skip_locked)
        .filter(event_id__gte=min_id, event_id__lte=max_id)
        .order_by("event_id")
        .values_list("event_id", flat=True)[:limit]
    )
    if not ids:
        return Claim([], None)
    PendingEvaluation.objects.filter(event_id__in=ids).delete()
    rows = (
        UsageEvent.objects.filter(id__in=ids)
        .order_by("id")
        .values_list("session_id", *EVENT_COLUMNS)
    )
    return Claim([(row[0], EventData(*row[1:])) for row in rows], policy_version_current())


def events_pending(*, min_id: int, max_id: int) -> bool:
    """Is anything in the range pending (including events another run holds)?"""
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_PENDING, [min_id, max_id])
            return cursor.fetchone()[0]
    return PendingEvaluation.objects.filter(event_id__gte=min_id, event_id__lte=max_id).exists()


def pending_orphans_delete(*, limit: int) -> int:
    """Drop pending rows whose event is gone. The table has no database foreign key (it would
    slow ingestion), so an event deleted outside the ORM leaves its row behind, and no
    claim's range, drawn from existing events, would ever reach it."""
    orphans = PendingEvaluation.objects.filter(
        ~Exists(UsageEvent.objects.filter(pk=OuterRef("event_id")))
    ).values_list("event_id", flat=True)[:limit]
    deleted, _ = PendingEvaluation.objects.filter(event_id__in=list(orphans)).delete()
    return deleted


def sessions_lock(session_ids: Iterable[int]) -> list[SessionRow]:
    """The sessions' rows, locked in id order (so concurrent batches of a session queue up)."""
    ids = sorted(session_ids)
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_SESSIONS, [ids])
            return [
                SessionRow(sid, workload_id, _decode(state), *rest)
                for sid, workload_id, state, *rest in cursor.fetchall()
            ]
    return [
        SessionRow(*row)
        for row in Session.objects.select_for_update()
        .filter(id__in=ids)
        .order_by("id")
        .values_list(*SESSION_FIELDS)
    ]


# What evaluation reads of a session: SessionRow's fields (a Session loaded .only(these)).
SESSION_FIELDS = (
    "id",
    "workload_id",
    "evaluation_state",
    "original_request",
    "started_at",
    "external_id",
    "source",
    "created_at",
)


def session_events(sessions: Sequence[SessionRow | Session]) -> dict[int, list[EventData]]:
    """Each session's evaluated events (not on the pending list), in time order: what a
    replay from a fresh state reads. One query."""
    events: dict[int, list[EventData]] = {}
    rows = (
        UsageEvent.objects.filter(
            session_id__in=[session.id for session in sessions],
            pending_evaluation__isnull=True,
        )
        .order_by("session_id", "occurred_at", "id")
        .values_list("session_id", *EVENT_COLUMNS)
    )
    for session_id, *columns in rows:
        events.setdefault(session_id, []).append(EventData(*columns))
    return events


def workloads_ever_gated() -> set[int]:
    """Workloads whose sessions have ever needed approval, from the audit trail (which keeps
    the gates of merged-away findings too). One query, on the index that leads with action."""
    from governance.evaluation.snapshot import GATE_SET

    return {
        int(object_id)
        for object_id in AuditEvent.objects.filter(
            action=GATE_SET, object_type="workloads.workload"
        )
        .values_list("object_id", flat=True)
        .distinct()
    }


def workloads_lock(workload_ids: Iterable[int], *, nowait: bool = False) -> None:
    """Lock these workloads' rows, in id order (one statement, none for an empty set).
    `nowait`: fail at once (OperationalError: the task retries) rather than wait."""
    ids = sorted(workload_ids)
    if ids:
        list(
            Workload.objects.select_for_update(nowait=nowait)
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def workloads_lock_containing(drafted: Iterable[tuple[int, str]]) -> set[int]:
    """Of these (workload id, severity) pairs, lock the workloads whose tier's rule would
    contain a finding of that severity (as `findings.services.tier_contains` decides), in id
    order, and return them: one statement, none when no draft is high or critical."""
    high = {workload_id for workload_id, severity in drafted if severity == "high"}
    critical = {workload_id for workload_id, severity in drafted if severity == "critical"}
    if not high and not critical:
        return set()
    containing = Q(pk__in=high | critical, tier__gate_sessions_on_high=True) | Q(
        Q(tier__suspend_on_critical=True) | Q(tier__revoke_on_critical=True), pk__in=critical
    )
    return set(
        Workload.objects.select_for_update(of=("self",))
        .filter(containing)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def sessions_unnamed(sessions: Sequence[SessionRow | Session]) -> set[int]:
    """Of these OTLP sessions, the ones no span has named yet: a session that a span names
    gets a trace link (SessionTrace) pointing at it, and one keyed by its trace id has none,
    whatever its id looks like. One query, none for an empty list."""
    if not sessions:
        return set()
    ids = {s.id for s in sessions}
    named = set(
        SessionTrace.objects.filter(session_id__in=ids).values_list("session_id", flat=True)
    )
    return ids - named


def sessions_being_named(sessions: Sequence[SessionRow | Session]) -> set[int]:
    """Of these trace-keyed sessions, the ones a span has named already: a trace link leads
    from their trace id to another session, and the fold that moves them into it is pending
    or under way. Their spans are judged in the named session, not under the trace id. One
    query, none for an empty list."""
    if not sessions:
        return set()
    return set(
        Session.objects.filter(id__in={s.id for s in sessions})
        .filter(being_named_elsewhere())
        .values_list("id", flat=True)
    )


def being_named_elsewhere() -> Exists:
    """For a query on sessions: a trace link leads from the session's id (a trace id) to
    another session (`sessions_being_named`, as a filter)."""
    return Exists(
        SessionTrace.objects.filter(
            workload_id=OuterRef("workload_id"), trace_id=OuterRef("external_id")
        ).exclude(session_id=OuterRef("id"))
    )


def session_approval_windows(
    sessions: Sequence[SessionRow | Session],
) -> dict[tuple[int, str], tuple[tuple[datetime, datetime], ...]]:
    """(workload id, session id) → when each was approved to run, ended early or not: one
    query, for the sessions of workloads whose sessions have ever needed approval. Each
    window runs MANDATE_SESSION_GATE_GRACE_SECONDS past its end (calls it allowed, landing
    late)."""
    if not sessions:
        return {}
    grace = timedelta(seconds=settings.MANDATE_SESSION_GATE_GRACE_SECONDS)
    windows: dict[tuple[int, str], list[tuple[datetime, datetime]]] = {}
    rows = SessionApproval.objects.filter(
        workload_id__in={s.workload_id for s in sessions},
        session__in={s.external_id for s in sessions},
    ).values_list("workload_id", "session", "valid_from", "valid_until", "revoked_at")
    for workload_id, session, valid_from, valid_until, revoked_at in rows:
        end = min(valid_until, revoked_at) if revoked_at else valid_until
        windows.setdefault((workload_id, session), []).append((valid_from, end + grace))
    return {key: tuple(found) for key, found in windows.items()}


def session_states_save(states: Sequence[tuple[int, dict]]) -> None:
    """Write each (session id, state) in one statement."""
    if not states:
        return
    if _postgresql():
        ids = [sid for sid, _ in states]
        texts = [_encode(state).decode() for _, state in states]
        connection.ensure_connection()
        # Server-side binding (Django's cursors bind client-side); errors mapped as Django's.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_SAVE_STATES, [ids, texts])
        return
    sessions = [Session(id=sid, evaluation_state=state) for sid, state in states]
    Session.objects.bulk_update(sessions, ["evaluation_state"])


LAST_USE_RESOLUTION = timedelta(hours=1)  # as in _TOOL_USES


def tool_uses_record(uses: dict[tuple[int, str], datetime]) -> None:
    """Move each active grant's last use forward to its (workload id, tool slug)'s latest call,
    to the hour (never back: a re-evaluation replays old events), in one statement."""
    if not uses:
        return
    if _postgresql():
        keys = sorted(uses)
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(
                _TOOL_USES,
                [[w for w, _ in keys], [t for _, t in keys], [uses[k] for k in keys]],
            )
        return
    grants = Entitlement.objects.filter(
        status=Entitlement.Status.ACTIVE,
        workload_id__in={w for w, _ in uses},
        tool__slug__in={t for _, t in uses},
    ).select_related("tool")
    for grant in grants:
        moment = uses.get((grant.workload_id, grant.tool.slug))
        if moment is None or moment < grant.valid_from:
            continue
        if grant.last_used_at is None or grant.last_used_at < moment - LAST_USE_RESOLUTION:
            grant.last_used_at = moment
            grant.save(update_fields=["last_used_at"])


def findings_insert(findings: Sequence[Finding]) -> list[Finding]:
    """Insert each finding unless its dedupe_key exists; return the inserted ones (pk set).

    Must run in the transaction holding the sessions' locks: that makes "new" exact.
    """
    if not findings:
        return []
    if _postgresql():
        return _findings_insert_postgresql(findings)
    keys = [f.dedupe_key for f in findings]
    existing = set(Finding.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    new = [f for f in findings if f.dedupe_key not in existing]
    Finding.objects.bulk_create(new, ignore_conflicts=True)
    return new


def _findings_insert_postgresql(findings: Sequence[Finding]) -> list[Finding]:
    # Every concrete column, each value prepared as the ORM would (defaults, auto_now, JSON
    # adaptation), so a column added to Finding later needs no change here.
    meta = Finding._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    # Concrete fields all have a column (the stubs allow None, for the kinds that have none).
    columns = ", ".join(quote(cast(str, f.column)) for f in fields)
    key_column = quote(cast(str, meta.get_field("dedupe_key").column))
    pk_column = quote(cast(str, meta.pk.column))
    params = []
    for finding in findings:
        params += [f.get_db_prep_save(f.pre_save(finding, True), connection) for f in fields]
    row = f"({', '.join(['%s'] * len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"VALUES {', '.join([row] * len(findings))} "
        f"ON CONFLICT ({key_column}) DO NOTHING "
        f"RETURNING {pk_column}, {key_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = dict((key, pk) for pk, key in cursor.fetchall())
    new = []
    for finding in findings:
        if finding.dedupe_key in inserted:
            finding.pk = inserted[finding.dedupe_key]
            finding._state.adding = False
            new.append(finding)
    return new
