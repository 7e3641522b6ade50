"""Exports of the compiled policy: Cedar (for Cedar-based gateways) and the snapshot as JSON.

Cedar model (no namespace, no schema needed):
- entities `Workload::"<slug>"` {status, classified}, `Tool::"<slug>"` {capability},
  `Action::"call"`;
- one forbid: a workload that is not active and classified may call nothing;
- one permit per active grant, bounded by its validity window on `context.now_us`
  (epoch microseconds, a Long). Request: principal Workload, action Action::"call", resource Tool;
- one forbid per workload whose sessions need approval (a containment), unless
  `context.session` (a String, when the call is part of a session) names a session approved
  for it and `context.now_us` is within that approval;
- one forbid per workload whose session limits a containment narrowed, unless the call names
  its session (`context has session`).
This is the static part only: session windows, budgets, dynamic combinations and token
binding need shared session state and stay with Mandate's endpoint.
"""

from __future__ import annotations

import json
import math

from governance.decisions.snapshot import Snapshot

ACTION = 'Action::"call"'
_FORBID_INACTIVE = """@id("workload-must-be-active-and-classified")
forbid (principal, action == Action::"call", resource)
unless { principal has status && principal.status == "active" && principal.classified };
"""


MICROSECONDS = 1_000_000


def _cedar_time(value: float) -> int:
    """A window's bound in epoch microseconds: the database keeps times to the microsecond,
    so the bound is a whole number and `floor(now) < bound` holds exactly when
    `now < bound` does (whole seconds would let a call through up to a second late)."""
    return round(value * MICROSECONDS)


def _cedar_string(value: str) -> str:
    """A Cedar string literal: quotes and backslashes escaped, anything unprintable as
    `\\u{hex}` (Cedar's escapes are Rust's, not JSON's)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    return '"' + "".join(out) + '"'


def _session_gate(slug: str, approved: dict[str, tuple[float, float]]) -> str:
    head = (
        f'@id("sessions-need-approval:{slug}")\n'
        f'forbid (principal == Workload::"{slug}", action == {ACTION}, resource)'
    )
    if not approved:
        return head + ";\n"
    windows = []
    for session, (valid_from, valid_until) in sorted(approved.items()):
        conditions = [f"context.session == {_cedar_string(session)}"]
        conditions.append(f"context.now_us >= {_cedar_time(valid_from)}")
        if valid_until != math.inf:
            conditions.append(f"context.now_us < {_cedar_time(valid_until)}")
        windows.append("(" + " && ".join(conditions) + ")")
    return head + f"\nunless {{ context has session && ({' || '.join(windows)}) }};\n"


def cedar_policies(snapshot: Snapshot) -> str:
    parts = [
        f"// Mandate policy version {snapshot.version}: static part (grants, workload status).",
        "// context.now_us: the request time in epoch microseconds (Long).",
        _FORBID_INACTIVE,
    ]
    for slug in sorted(snapshot.workloads):
        entry = snapshot.workloads[slug]
        for tool in sorted(entry.grants):
            valid_from, valid_until = entry.grants[tool]
            conditions = [f"context.now_us >= {_cedar_time(valid_from)}"]
            if valid_until != math.inf:
                conditions.append(f"context.now_us < {_cedar_time(valid_until)}")
            parts.append(
                f'@id("grant:{slug}:{tool}")\n'
                f'permit (principal == Workload::"{slug}", action == {ACTION}, '
                f'resource == Tool::"{tool}")\n'
                f"when {{ {' && '.join(conditions)} }};\n"
            )
        if entry.sessions_need_approval:
            parts.append(_session_gate(slug, entry.approved_sessions))
        if entry.sessions_required:
            parts.append(
                f'@id("sessions-required:{slug}")\n'
                f'forbid (principal == Workload::"{slug}", action == {ACTION}, resource)\n'
                "unless { context has session };\n"
            )
    return "\n".join(parts)


def cedar_entities(snapshot: Snapshot) -> list[dict]:
    entities = [{"uid": {"type": "Action", "id": "call"}, "attrs": {}, "parents": []}]
    for slug, entry in sorted(snapshot.workloads.items()):
        entities.append(
            {
                "uid": {"type": "Workload", "id": slug},
                "attrs": {"status": entry.status, "classified": entry.classified},
                "parents": [],
            }
        )
    for slug, (capability, _labels) in sorted(snapshot.tools.items()):
        entities.append(
            {
                "uid": {"type": "Tool", "id": slug},
                "attrs": {"capability": capability},
                "parents": [],
            }
        )
    return entities


def cedar_request(workload: str, tool: str, now: float, session: str | None = None) -> dict:
    context: dict = {"now_us": math.floor(now * MICROSECONDS)}
    if session:
        context["session"] = session
    return {
        "principal": f'Workload::"{workload}"',
        "action": ACTION,
        "resource": f'Tool::"{tool}"',
        "context": context,
    }


def _finite(value: float) -> float | None:
    return None if value == math.inf else value


def snapshot_json(snapshot: Snapshot) -> dict:
    """The compiled snapshot as plain JSON (tokens left out), for gateways that cache."""
    return {
        "format": "mandate.snapshot/1",
        "policy_version": snapshot.version,
        "compiled_at": snapshot.compiled_at,
        "times": "epoch seconds; null is an open end",
        "workloads": {
            slug: {
                "status": entry.status,
                "classified": entry.classified,
                "grants": {
                    tool: {"valid_from": start, "valid_until": _finite(end)}
                    for tool, (start, end) in sorted(entry.grants.items())
                },
                "session": {
                    "max_session_seconds": entry.max_session_seconds,
                    "idle_timeout_seconds": entry.idle_timeout_seconds,
                    "max_tool_calls": entry.max_tool_calls,
                    "log_level": entry.log_level,
                },
                "extensions": [
                    {
                        "valid_from": start,
                        "valid_until": _finite(end),
                        "max_session_seconds": seconds,
                        "max_tool_calls": calls,
                    }
                    for start, end, seconds, calls in entry.extensions
                ],
                "exceptions": {
                    rule: [{"valid_from": s, "valid_until": _finite(e)} for s, e in windows]
                    for rule, windows in sorted(entry.exceptions.items())
                },
                "sessions_need_approval": entry.sessions_need_approval,
                "sessions_required": entry.sessions_required,
                "approved_sessions": {
                    session: {"valid_from": start, "valid_until": _finite(end)}
                    for session, (start, end) in sorted(entry.approved_sessions.items())
                },
            }
            for slug, entry in sorted(snapshot.workloads.items())
        },
        "tools": {slug: capability for slug, (capability, _l) in sorted(snapshot.tools.items())},
        "dynamic_rules": [
            {
                "slug": rule.slug,
                "name": rule.name,
                "effect": rule.effect,
                "groups": [sorted(group) for group in rule.groups],
            }
            for rule in snapshot.rules
        ],
    }


def snapshot_json_text(snapshot: Snapshot) -> str:
    return json.dumps(snapshot_json(snapshot), indent=2, sort_keys=False)
