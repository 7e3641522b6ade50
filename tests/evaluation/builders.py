"""Hand-built sessions: plain events for detector tests, and rows for service tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from governance.evaluation.detectors import (
    EventData,
    ExceptionWindow,
    GrantWindow,
    Limits,
    PolicySnapshot,
)
from workloads.combinations import RuleSpec

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CATALOGUE = {
    "web-search": "web_access",
    "file-read": "file_read",
    "sql-query": "data_store",
    "send-email": "messaging",
    "code-exec": "code_execution",
    "crm-api": "downstream_api",
}
TRIFECTA = RuleSpec(
    "lethal-trifecta",
    "Lethal trifecta",
    (
        frozenset({"data_store", "file_read"}),
        frozenset({"web_access"}),
        frozenset({"code_execution", "messaging"}),
    ),
    "exception_required",
    "both",
)
_ids = itertools.count(1)


def event(kind: str = "tool_call", at: float = 0, **fields) -> EventData:
    """An event `at` seconds after T0."""
    return EventData(
        id=fields.pop("id", next(_ids)),
        type=kind,
        occurred_at=T0 + timedelta(seconds=at),
        **fields,
    )


def grant(tool: str, status: str = "active", start: float = -3600, end: float | None = None):
    return GrantWindow(
        tool=tool,
        status=status,
        valid_from=T0 + timedelta(seconds=start),
        valid_until=T0 + timedelta(seconds=end) if end is not None else None,
        revoked_at=T0 + timedelta(seconds=end) if status == "revoked" and end else None,
    )


def policy(**overrides) -> PolicySnapshot:
    values = dict(
        workload_status="active",
        purpose="Summarise support tickets and draft replies for agents.",
        tier_position="middle",
        limits=Limits(
            max_session_seconds=600,
            idle_timeout_seconds=120,
            max_tool_calls=10,
            max_reasoning_tokens=1000,
            loop_threshold=3,
        ),
        tools=CATALOGUE,
        grants=tuple(grant(t) for t in CATALOGUE),
        rules=(TRIFECTA,),
        exceptions=(),
    )
    values.update(overrides)
    return PolicySnapshot(**values)


def exception(
    rule: str,
    start: float = -60,
    end: float = 3600,
    status: str = "active",
    revoked: float | None = None,
) -> ExceptionWindow:
    return ExceptionWindow(
        rule,
        status,
        T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=end),
        None if revoked is None else T0 + timedelta(seconds=revoked),
    )
