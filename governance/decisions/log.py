"""The decision log writer: buffered in process, written in batches by a background thread.

Why in process and not a Redis list: it serves the embedded default (no Redis) and production
through one path, and it costs the request nothing but a deque append. The thread wakes every
DECISIONS_LOG_FLUSH_MS (or as soon as a full batch is waiting) and writes what is buffered at
that moment — one COPY on PostgreSQL, one bulk_create elsewhere — never "until empty", which
degenerates into many tiny writes under load. It also touches the tokens' last_used_at, which
the hot path no longer does.

The request appends a plain tuple; the writer turns a batch into COPY text in one tight loop
(about three times cheaper per row than doing it in each request among busy processes), in
chunks that each release the GIL, and hands libpq one buffer. psycopg's per-row write_row
and a datetime per row, done in one go, held the GIL for milliseconds at a time and showed
up as the endpoint's p99 (bench/README.md). The writer also keeps its database connection
between wake-ups instead of reconnecting twice a second.

Trade-off (documented in bench/README.md): entries buffered in a process that is killed are
lost (at most one flush interval's worth); a graceful exit flushes. When the database is down
entries stay buffered up to DECISIONS_LOG_MAX_BUFFER, then the oldest are dropped. A loss is
never silent: once the database answers again the writer records what was dropped (and any
entry the database refused) as a `decision_log.entries_lost` audit event, which the
console's decision log shows, and logs it as an error.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta

from governance.decisions import process

logger = logging.getLogger(__name__)

COLUMNS = (
    "decided_at",
    "workload",
    "tool",
    "session",
    "decision",
    "reason_code",
    "reasons",
    "policy_version",
    "latency_us",
    "token_id",
    "correlation_id",
    "request_id",
    "context",
)


def decision_row(
    *,
    decided_at: float,
    workload: str,
    tool: str,
    session: str | None,
    decision: str,
    reasons_json: str,
    reason_code: str,
    policy_version: int,
    latency_us: int,
    token_id: int | None,
    correlation_id: str = "",
    request_id: str = "",
    context_json: str = "{}",
) -> tuple:
    return (
        decided_at,
        workload[:80],
        tool[:80],
        (session or "")[:200],
        decision,
        reason_code,
        reasons_json,
        policy_version,
        min(latency_us, 2_147_483_647),
        token_id,
        correlation_id[:64],
        request_id[:64],
        context_json,
    )


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"})
_second: tuple[int, str] = (0, "1970-01-01 00:00:00")


def _text(value: str) -> str:
    """A COPY text field. Identifiers are printable almost always: test before translating."""
    if value.isprintable() and "\\" not in value:
        return value
    return value.translate(_ESCAPES)


def _json_text(value: str) -> str:
    # msgspec escapes control characters, so only backslashes need doubling; a NUL escape is
    # replaced because jsonb refuses it (one such row would otherwise fail its whole batch).
    if "\\" not in value:
        return value
    return value.replace("\\u0000", "\\ufffd").replace("\\", "\\\\")


def _timestamp(epoch: float) -> str:
    """timestamptz text, formatting the date once per second rather than once per row."""
    global _second
    whole = int(epoch)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((epoch - whole) * 1_000_000):06d}+00"


def copy_line(row: tuple) -> str:
    """A `decision_row` as one line of PostgreSQL's COPY text format."""
    (decided_at, workload, tool, session, decision, code, reasons, version, latency, token,
     correlation_id, request_id, context) = row  # fmt: skip
    given = workload + tool + session + correlation_id + request_id
    if not given.isprintable() or "\\" in given:  # rare: escape field by field
        workload, tool, session = _text(workload), _text(tool), _text(session)
        correlation_id, request_id = _text(correlation_id), _text(request_id)
    return (
        f"{_timestamp(decided_at)}\t{workload}\t{tool}\t{session}\t{decision}\t{code}\t"
        f"{_json_text(reasons)}\t{version}\t{latency}\t{'\\N' if token is None else token}\t"
        f"{correlation_id}\t{request_id}\t{_json_text(context)}\n"
    )


class DecisionLog:
    def __init__(
        self,
        *,
        enabled: bool = True,
        background: bool = True,
        interval: float = 0.5,
        batch: int = 2000,
        max_buffer: int = 200_000,
    ):
        self.enabled = enabled
        self.background = background
        self.interval = interval
        self.batch = batch
        self.max_buffer = max_buffer
        self.dropped = 0
        self.rejected = 0
        # Losses not yet reported: (dropped, rejected, first and last time one happened).
        self._lost = _Losses()
        self.written = 0
        self._buffer: deque = deque()
        self._tokens: set[int] = set()
        self._touched: dict[int, float] = {}  # token id -> when this process last marked it
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None  # the process whose writer thread runs
        self._flush_lock = threading.Lock()
        self._stopped = False

    def record(self, row: tuple) -> None:
        if not self.enabled:
            return
        self._buffer.append(row)
        if row[9] is not None:
            self._tokens.add(row[9])
        if len(self._buffer) > self.max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            self._lost.add(dropped=1)
        if self.background:
            if self._pid != process.pid:
                self._start()
            if len(self._buffer) >= self.batch:
                self._wake.set()

    def pending(self) -> int:
        return len(self._buffer)

    def _start(self) -> None:
        # After a fork the parent's thread is gone: start one per process, lazily.
        self._pid = process.pid
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        from django.db import connection

        while not self._stopped:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush(limit=max(len(self._buffer), 1))
            except Exception:  # never let the writer die; entries stay buffered
                logger.exception("decision log flush failed")
                connection.close()  # reconnect on the next wake-up
        connection.close()

    def stop(self) -> None:
        """Flush and end the writer thread (tests; an exiting process flushes via atexit)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def flush(self, limit: int | None = None) -> int:
        """Write what is buffered now (at most `limit` rows), in batches. Returns rows written."""
        from django.db import DataError, IntegrityError

        with self._flush_lock:
            total = 0
            todo = len(self._buffer) if limit is None else min(limit, len(self._buffer))
            while todo > 0:
                rows = [self._buffer.popleft() for _ in range(min(self.batch, todo))]
                todo -= len(rows)
                try:
                    _write(rows)
                except (DataError, IntegrityError):
                    # One bad entry must not block the log: write the batch row by row.
                    total += self._write_one_by_one(rows)
                    continue
                except Exception:
                    self._buffer.extendleft(reversed(rows))
                    raise
                total += len(rows)
            self.written += total
            if total:
                self._touch_tokens()
            if self._lost:
                self._report_losses()
            return total

    def _report_losses(self) -> None:
        """Record the entries this process lost since the last report, now that the database
        answers (if it fails again, they stay unreported and the next flush retries)."""
        lost, self._lost = self._lost, _Losses()
        try:
            _losses_record(lost)
        except Exception:
            self._lost.merge(lost)
            raise
        logger.error(
            "decision log lost %d entries (%d dropped from a full buffer while the database "
            "was unreachable, %d refused by the database) between %s and %s",
            lost.dropped + lost.rejected,
            lost.dropped,
            lost.rejected,
            _iso(lost.first_at),
            _iso(lost.last_at),
        )

    def _touch_tokens(self) -> None:
        """Mark the tokens that asked as used, at most once a minute each (not a query per
        flush: the writer flushes twice a second)."""
        now = time.monotonic()
        tokens, self._tokens = self._tokens, set()
        # tuple(): a request thread may still add to the old set (the add was under way when
        # it was swapped); copying first is one step under the GIL, iterating is not.
        due = {t for t in tuple(tokens) if now - self._touched.get(t, -TOUCH_EVERY) >= TOUCH_EVERY}
        if due:
            _mark_tokens_used(due)
            self._touched.update(dict.fromkeys(due, now))

    def _write_one_by_one(self, rows: list) -> int:
        from django.db import DataError, IntegrityError

        written = 0
        for row in rows:
            try:
                _write([row])
                written += 1
            except (DataError, IntegrityError):
                self.rejected += 1
                self._lost.add(rejected=1)
                logger.error("decision log entry rejected by the database: %r", row)
        return written


class _Losses:
    __slots__ = ("dropped", "first_at", "last_at", "rejected")

    def __init__(self):
        self.dropped = self.rejected = 0
        self.first_at = self.last_at = 0.0

    def __bool__(self) -> bool:
        return bool(self.dropped or self.rejected)

    def add(self, *, dropped: int = 0, rejected: int = 0) -> None:
        now = time.time()
        if not self:
            self.first_at = now
        self.last_at = now
        self.dropped += dropped
        self.rejected += rejected

    def merge(self, other: _Losses) -> None:
        if not self:
            self.first_at = other.first_at
        else:
            self.first_at = min(self.first_at, other.first_at)
        self.last_at = max(self.last_at, other.last_at)
        self.dropped += other.dropped
        self.rejected += other.rejected


LOSSES_ACTION = "decision_log.entries_lost"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _losses_record(lost: _Losses) -> None:
    from django.db import transaction

    from governance.audit import audit_record

    with transaction.atomic():
        audit_record(
            by=None,
            action=LOSSES_ACTION,
            object_type="governance.decision",
            object_repr="decision log",
            after={
                "lost": lost.dropped + lost.rejected,
                "dropped": lost.dropped,
                "rejected": lost.rejected,
                "first_lost_at": _iso(lost.first_at),
                "last_lost_at": _iso(lost.last_at),
                "host": socket.gethostname(),
                "process": process.pid,
            },
        )


def _write(rows: list) -> None:
    """Store `decision_row` tuples: one COPY on PostgreSQL, one bulk_create elsewhere."""
    from django.db import connection, transaction

    from governance.models import Decision

    with transaction.atomic():
        if connection.vendor == "postgresql":
            payload = _copy_payload(rows)
            sql = f"COPY {Decision._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
            # The raw psycopg cursor: wrap its errors so callers see Django's DataError etc.
            with connection.cursor() as cursor, connection.wrap_database_errors:
                # The log already accepts losing its in-process buffer on a crash; not waiting
                # for the WAL flush at commit keeps the writer's I/O off the request cores.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                with cursor.cursor.copy(sql) as copy:
                    copy.write(payload)
        else:
            Decision.objects.bulk_create(
                [Decision(**dict(zip(COLUMNS, _decoded(row), strict=True))) for row in rows]
            )
        _count(rows)


def _count(rows: list[tuple]) -> None:
    """Add the rows to the hourly counts the charts read (one upsert for the batch)."""
    from django.db import connection

    from governance.models import DecisionCount

    buckets = Counter((int(row[0] // 3600) * 3600, row[4], row[5]) for row in rows)
    table = connection.ops.quote_name(DecisionCount._meta.db_table)
    # Sorted, so two writers upserting the same buckets lock them in the same order.
    values = sorted(buckets.items())
    sql = (
        f"INSERT INTO {table} (hour, decision, reason_code, n) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * len(values))
        + f" ON CONFLICT (hour, decision, reason_code) DO UPDATE SET n = {table}.n + excluded.n"
    )
    params = []
    for (hour, decision, code), n in values:
        params += [datetime.fromtimestamp(hour, UTC), decision, code, n]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _copy_payload(rows: list[tuple]) -> bytes:
    """The COPY text of a batch, built in chunks that each end by releasing the GIL, so a
    request thread waiting for it waits for one chunk (well under a millisecond), never for
    the whole batch."""
    chunks = []
    for start in range(0, len(rows), _CHUNK):
        chunks.append("".join([copy_line(row) for row in rows[start : start + _CHUNK]]))
        time.sleep(0)
    return "".join(chunks).encode()


_CHUNK = 250
TOUCH_EVERY = 60.0  # seconds; last_used_at is shown to the minute


def _mark_tokens_used(token_ids: set[int]) -> None:
    """Mark the tokens that asked as used (at most once a minute each)."""
    if not token_ids:
        return
    from governance.models import ServiceToken

    now = datetime.now(UTC)
    ServiceToken.objects.filter(pk__in=token_ids).exclude(
        last_used_at__gt=now - timedelta(minutes=1)
    ).update(last_used_at=now)


def _decoded(row: tuple) -> tuple:
    import json

    return (
        datetime.fromtimestamp(row[0], UTC),
        *row[1:6],
        json.loads(row[6]),
        *row[7:12],
        json.loads(row[12]),
    )
