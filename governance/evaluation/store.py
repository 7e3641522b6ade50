"""Row access for the evaluation service: set-based SQL on PostgreSQL, the ORM elsewhere.

Only the service (`governance.evaluation.services`) calls these, inside its transaction. Each
function is one statement on PostgreSQL whatever the batch size:

- `events_claim`: lock the range's unevaluated events in id order, mark them evaluated and
  return the columns the detectors read (UPDATE … FROM (SELECT … FOR UPDATE) … RETURNING). A
  concurrent or redelivered run waits on the locks, then skips what was evaluated meanwhile;
  a rollback un-marks them.
- `sessions_lock`: the sessions' rows, locked in id order, state as text (decoded by msgspec).
- `session_states_save`: every session's new state in one UPDATE … FROM unnest(…).
- `findings_insert`: INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING the new rows, so
  "which are new" is the database's answer, not a separate read.

SQLite (the embedded default, no speed target) runs the same steps with the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
from django.db import connection

from governance.evaluation.detectors import EventData
from governance.models import Finding
from workloads.models import Session, UsageEvent

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
)
_EVENT_SELECT = ", ".join(f"e.{column}" for column in EVENT_COLUMNS)

# ANY(ARRAY(…)): the claimed ids drive an index scan on the primary key, whatever the table's
# size (a join against the subquery may be planned as a scan of the whole table).
_CLAIM = f"""
UPDATE workloads_usageevent e SET evaluated = true
WHERE e.id = ANY(ARRAY(
    SELECT id FROM workloads_usageevent
    WHERE id BETWEEN %s AND %s AND NOT evaluated
    ORDER BY id LIMIT %s
    FOR UPDATE
))
RETURNING e.session_id, {_EVENT_SELECT}
"""
_SESSIONS = """
SELECT id, workload_id, evaluation_state::text, original_request, started_at
FROM workloads_session WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""
_SAVE_STATES = """
UPDATE workloads_session s SET evaluation_state = v.state::jsonb
FROM unnest(%s::bigint[], %s::text[]) AS v(id, state)
WHERE s.id = v.id
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


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def events_claim(*, min_id: int, max_id: int, limit: int) -> list[tuple[int, EventData]]:
    """Up to `limit` unevaluated events of [min_id, max_id], lowest ids first, marked evaluated
    (in the caller's transaction) and returned as (session id, EventData)."""
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM, [min_id, max_id, limit])
            rows = cursor.fetchall()
        rows.sort(key=lambda row: row[1])
        return [(row[0], EventData(*row[1:])) for row in rows]
    rows = list(
        UsageEvent.objects.select_for_update()
        .filter(id__gte=min_id, id__lte=max_id, evaluated=False)
        .order_by("id")
        .values_list("session_id", *EVENT_COLUMNS)[:limit]
    )
    UsageEvent.objects.filter(id__in=[row[1] for row in rows]).update(evaluated=True)
    return [(row[0], EventData(*row[1:])) for row in rows]


def sessions_lock(session_ids: Iterable[int]) -> list[SessionRow]:
    """The sessions' rows, locked in id order (so concurrent batches of a session queue up)."""
    ids = sorted(session_ids)
    if _postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_SESSIONS, [ids])
            return [
                SessionRow(sid, workload_id, _decode(state), request, started_at)
                for sid, workload_id, state, request, started_at in cursor.fetchall()
            ]
    return [
        SessionRow(*row)
        for row in Session.objects.select_for_update()
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", "workload_id", "evaluation_state", "original_request", "started_at")
    ]


def session_states_save(states: Sequence[tuple[int, dict]]) -> None:
    """Write each (session id, state) in one statement."""
    if not states:
        return
    if _postgresql():
        ids = [sid for sid, _ in states]
        texts = [_encode(state).decode() for _, state in states]
        with connection.cursor() as cursor:
            cursor.execute(_SAVE_STATES, [ids, texts])
        return
    sessions = [Session(id=sid, evaluation_state=state) for sid, state in states]
    Session.objects.bulk_update(sessions, ["evaluation_state"])


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
    params = []
    for finding in findings:
        params += [f.get_db_prep_save(f.pre_save(finding, True), connection) for f in fields]
    row = f"({', '.join(['%s'] * len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * len(findings))} "
        f"ON CONFLICT ({quote(meta.get_field('dedupe_key').column)}) DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, {quote(meta.get_field('dedupe_key').column)}"
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
