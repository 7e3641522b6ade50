"""The decision log writer: buffered in process, written in batches by a background thread.

Why in process and not a Redis list: it serves the embedded default (no Redis) and production
through one path, and it costs the request nothing but a deque append. The thread wakes every
DECISIONS_LOG_FLUSH_MS (or as soon as a full batch is waiting) and writes what is buffered at
that moment — one COPY on PostgreSQL, one bulk_create elsewhere — never "until empty", which
degenerates into many tiny writes under load. It also touches the tokens' last_used_at, which
the hot path no longer does.

Trade-off (documented in bench/README.md): entries buffered in a process that is killed are
lost (at most one flush interval's worth); a graceful exit flushes. When the database is down
entries stay buffered up to DECISIONS_LOG_MAX_BUFFER, then the oldest are dropped and counted.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from datetime import UTC, datetime, timedelta

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
        self.written = 0
        self._buffer: deque[tuple] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._flush_lock = threading.Lock()
        self._stopped = False

    def record(self, row: tuple) -> None:
        if not self.enabled:
            return
        self._buffer.append(row)
        if len(self._buffer) > self.max_buffer:
            self._buffer.popleft()
            self.dropped += 1
        if self.background:
            if self._pid != os.getpid():
                self._start()
            if len(self._buffer) >= self.batch:
                self._wake.set()

    def pending(self) -> int:
        return len(self._buffer)

    def _start(self) -> None:
        # After a fork the parent's thread is gone: start one per process, lazily.
        self._pid = os.getpid()
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
            finally:
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
        with self._flush_lock:
            total = 0
            todo = len(self._buffer) if limit is None else min(limit, len(self._buffer))
            while todo > 0:
                rows = [self._buffer.popleft() for _ in range(min(self.batch, todo))]
                todo -= len(rows)
                try:
                    _write(rows)
                except Exception:
                    self._buffer.extendleft(reversed(rows))
                    raise
                total += len(rows)
            self.written += total
            return total


def _write(rows: list[tuple]) -> None:
    from django.db import connection, transaction

    from governance.models import Decision, ServiceToken

    stamped = [(datetime.fromtimestamp(row[0], UTC), *row[1:]) for row in rows]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            sql = f"COPY {Decision._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
            with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
                for row in stamped:
                    copy.write_row(row)
        else:
            Decision.objects.bulk_create(
                [Decision(**dict(zip(COLUMNS, _decoded(row), strict=True))) for row in stamped]
            )
        token_ids = {row[9] for row in rows if row[9] is not None}
        if token_ids:
            now = datetime.now(UTC)
            ServiceToken.objects.filter(pk__in=token_ids).exclude(
                last_used_at__gt=now - timedelta(minutes=1)
            ).update(last_used_at=now)


def _decoded(row: tuple) -> tuple:
    import json

    return (*row[:6], json.loads(row[6]), *row[7:12], json.loads(row[12]))
