"""OTLP spans → usage events: the gen_ai mapping (decoding is in `otlp_wire`).

`spans_to_records` maps plain `OtlpSpan`s, span by span:

- execute_tool (OpenInference TOOL) → tool_call at the start, plus tool_result at the end
  when the span carries a result (`gen_ai.tool.call.result` / `output.value`).
- chat, generate_content, text_completion (OpenInference LLM) → reasoning_step with tokens
  (reasoning tokens from `gen_ai.usage.reasoning.output_tokens` or OpenInference's
  `llm.token_count.completion_details.reasoning`) and the reasoning text when captured.
- invoke_agent (OpenInference AGENT) → session_start (original request: the first user
  message), final_action when there is output, session_end at the end.
- other spans (HTTP, embeddings, retrieval, workflows …) are not usage events: ignored.

Event ids are `<trace id>:<span id>` (plus `:result`, `:final`, `:end` for the second and
third event of one span), so a re-sent span is stored once.

Session: `gen_ai.conversation.id`, `session.id`, `langfuse.session.id`, else shared from
another span of the same trace in the batch, else the session an earlier batch linked the
trace to, else the trace id (folded into the named session once it is known: `traces`).
Workload: `mandate.workload`, `gen_ai.agent.id`, `gen_ai.agent.name` (span, then resource)
or the resource's `service.name` — the first that names a known workload; else shared from
the trace; else the token's only workload. It must be one the token is bound to, or the span
is rejected. A `mandate.workload` decides alone: a span naming one that is unknown or not
the token's is rejected, never filed under another name or its trace's workload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from governance.ingest.access import IngestToken, workload_ids_for
from governance.ingest.otlp_wire import OtlpSpan
from governance.ingest.records import (
    MAX_INT,
    EventRecord,
    Rejection,
    arguments_hash,
    json_has_nul,
    timestamp_problem,
)
from governance.ingest.traces import trace_sessions_known

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id")
WORKLOAD_KEYS = ("mandate.workload", "gen_ai.agent.id", "gen_ai.agent.name")
# The one name that can only mean a Mandate workload (agent and service names often do not).
EXPLICIT_WORKLOAD_KEY = "mandate.workload"
INFERENCE = frozenset({"chat", "generate_content", "text_completion"})
OPENINFERENCE_KINDS = {"LLM": "chat", "TOOL": "execute_tool", "AGENT": "invoke_agent"}
KNOWN_OPERATIONS = INFERENCE | {"execute_tool", "invoke_agent"}
# Bulky or sensitive values kept out of the stored attributes (content goes to `content`).
CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "input.value",
        "output.value",
        "tool.parameters",
    }
)
MAX_ATTRIBUTE_TEXT = 1000
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "llm.token_count.completion_details.reasoning",
)


# --- mapping -------------------------------------------------------------------------------


def _first(attributes: dict[str, Any], keys) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value not in (None, "", [], {}):
            return value
    return None


def _count(attributes: dict[str, Any], *keys: str) -> int:
    value = _first(attributes, keys)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, min(int(value), MAX_INT))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _messages(value: Any) -> list[dict]:
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            return []
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _parts_text(message: dict, kinds=("text",)) -> str:
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [
            _as_text(p.get("content"))
            for p in parts
            if isinstance(p, dict) and p.get("type") in kinds and p.get("content") is not None
        ]
        return "\n".join(t for t in texts if t)
    content = message.get("content")
    return content if isinstance(content, str) and "text" in kinds else ""


def _tool_calls_text(message: dict) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list):
        return ""
    calls = [
        f"{p.get('name')}({_as_text(p.get('arguments'))})"
        for p in parts
        if isinstance(p, dict) and p.get("type") == "tool_call"
    ]
    return "\n".join(calls)


def original_request(span: OtlpSpan) -> str:
    for message in _messages(span.attributes.get("gen_ai.input.messages")):
        if message.get("role") == "user" and (text := _parts_text(message)):
            return text
    for name, attributes in span.events:
        if name == "gen_ai.user.message" and isinstance(attributes.get("content"), str):
            return attributes["content"]
        if name == "gen_ai.content.prompt" and attributes.get("gen_ai.prompt"):
            return _as_text(attributes["gen_ai.prompt"])
    return _as_text(span.attributes.get("input.value"))


def final_output(span: OtlpSpan) -> str:
    for message in reversed(_messages(span.attributes.get("gen_ai.output.messages"))):
        if text := _parts_text(message) or _tool_calls_text(message):
            return text
    for name, attributes in span.events:
        if name == "gen_ai.content.completion" and attributes.get("gen_ai.completion"):
            return _as_text(attributes["gen_ai.completion"])
    return _as_text(span.attributes.get("output.value"))


def reasoning_text(span: OtlpSpan) -> str:
    messages = _messages(span.attributes.get("gen_ai.output.messages"))
    reasoning = "\n".join(t for m in messages if (t := _parts_text(m, ("reasoning",))))
    return reasoning or "\n".join(t for m in messages if (t := _parts_text(m)))


def operation(span: OtlpSpan) -> str:
    op = span.attributes.get("gen_ai.operation.name")
    if isinstance(op, str) and op:
        return op
    kind = span.attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[kind.upper()]
    first_word = span.name.split(" ", 1)[0]
    return first_word if first_word in KNOWN_OPERATIONS else ""


def _timestamp(nanos: int) -> datetime | None:
    if nanos <= 0:
        return None
    try:
        return EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        return None


def _stored_attributes(span: OtlpSpan) -> str:
    kept: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "span_name": span.name[:MAX_ATTRIBUTE_TEXT],
    }
    if span.parent_span_id:
        kept["parent_span_id"] = span.parent_span_id
    if span.status_code == 2:
        kept["error"] = span.status_message[:MAX_ATTRIBUTE_TEXT] or True
    for key, value in span.attributes.items():
        if key in CONTENT_KEYS or (isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT):
            continue
        kept[key] = value
    return msgspec.json.encode(kept).decode()


def _explicit_workload(span: OtlpSpan):
    return span.attributes.get(EXPLICIT_WORKLOAD_KEY) or span.resource.get(EXPLICIT_WORKLOAD_KEY)


def _workload_candidates(span: OtlpSpan) -> list[str]:
    """The names a span may belong to, most specific first. `mandate.workload` is a claim,
    not a hint: when given it is the only candidate, so a span naming a workload its token
    may not report for is refused rather than filed under the service's name."""
    explicit = _explicit_workload(span)
    if explicit:
        return [explicit] if isinstance(explicit, str) else []
    names = []
    for source in (span.attributes, span.resource):
        for key in WORKLOAD_KEYS:
            if isinstance(value := source.get(key), str) and value:
                names.append(value)
    if isinstance(service := span.resource.get("service.name"), str) and service:
        names.append(service)
    return names


def spans_to_records(
    spans: list[OtlpSpan], *, token: IngestToken, now: datetime
) -> tuple[list[EventRecord], list[Rejection]]:
    """Map spans onto events; a span that cannot be stored is rejected with a reason."""
    candidates = {id(span): _workload_candidates(span) for span in spans}
    known = workload_ids_for({name for names in candidates.values() for name in names})
    if not token.all_workloads:
        # A bound token's names resolve among its own workloads only: one it may not report
        # for reads as a name nobody has, so it cannot probe which workloads exist.
        known = {name: pk for name, pk in known.items() if token.may_report_for(pk)}
    trace_workload: dict[str, int] = {}
    trace_session: dict[str, str] = {}
    for span in spans:
        named = next((known[n] for n in candidates[id(span)] if n in known), None)
        if named is not None:
            trace_workload.setdefault(span.trace_id, named)
        session = _first(span.attributes, SESSION_KEYS)
        if isinstance(session, (str, int)) and not isinstance(session, bool):
            trace_session.setdefault(span.trace_id, str(session))

    unnamed = {span.trace_id for span in spans if span.trace_id not in trace_session}
    linked = trace_sessions_known(unnamed) if unnamed else {}

    records: list[EventRecord] = []
    rejected: list[Rejection] = []
    for span in spans:
        index, key = span.index, f"{span.trace_id}:{span.span_id}"
        op = operation(span)
        if op not in KNOWN_OPERATIONS:
            continue
        named = next((known[n] for n in candidates[id(span)] if n in known), None)
        workload_id = named or trace_workload.get(span.trace_id) or token.only_workload_id
        explicit = _explicit_workload(span)
        if explicit and named is None and token.all_workloads:
            # Never filed under its trace's workload instead of the one it names.
            rejected.append(
                Rejection(index, key, "unknown_workload", f"No known workload ({explicit}).")
            )
            continue
        if (
            not token.all_workloads
            and named is None
            and (explicit or (workload_id is None and candidates[id(span)]))
        ):
            # As for native events: a bound token is told the same about a workload that
            # does not exist as about one it may not report for. (An agent or service name
            # that names no workload of its own falls back to its only workload, as before.)
            message = "This token may not report for the workload."
            rejected.append(Rejection(index, key, "workload_not_bound", message))
            continue
        if workload_id is None:
            names = ", ".join(candidates[id(span)]) or "none given"
            rejected.append(
                Rejection(index, key, "unknown_workload", f"No known workload ({names}).")
            )
            continue
        if not token.may_report_for(workload_id):
            message = "This token may not report for the workload."
            rejected.append(Rejection(index, key, "workload_not_bound", message))
            continue
        session = (
            trace_session.get(span.trace_id)
            or linked.get((workload_id, span.trace_id))
            or span.trace_id
        )[:200]
        made = _span_events(span, op, workload_id, session, now)
        if isinstance(made, tuple):
            rejected.append(Rejection(index, key, *made))
        else:
            records.extend(made)
    return records, rejected


def _span_events(
    span: OtlpSpan, op: str, workload_id: int, session: str, now: datetime
) -> list[EventRecord] | tuple[str, str, str]:
    """The events one gen_ai span stands for, or (code, message, field) when it cannot be kept."""
    started = _timestamp(span.start_ns)
    if started is None:
        return "bad_timestamp", "startTimeUnixNano is missing.", "startTimeUnixNano"
    if problem := timestamp_problem(started, now):
        return "bad_timestamp", problem, "startTimeUnixNano"
    ended = _timestamp(span.end_ns)
    if ended is None or ended < started:
        ended = started
    duration_ms = (
        min((span.end_ns - span.start_ns) // 1_000_000, MAX_INT)
        if span.end_ns >= span.start_ns
        else None
    )
    key = f"{span.trace_id}:{span.span_id}"
    attributes = _stored_attributes(span)
    a = span.attributes
    base = EventRecord(
        workload_id, session, key, "", started, "", "", "", "", 0, 0, 0, duration_ms, attributes
    )
    made: list[EventRecord] = []
    if op == "execute_tool":
        tool = _first(a, ("gen_ai.tool.name", "tool.name"))
        if not isinstance(tool, str):
            tool = span.name.split(" ", 1)[1] if span.name.startswith("execute_tool ") else ""
        if not tool or len(tool) > 80:
            message = "A tool span needs gen_ai.tool.name (at most 80 characters)."
            return ("missing_field" if not tool else "invalid_field"), message, "gen_ai.tool.name"
        call_id = _as_text(_first(a, ("gen_ai.tool.call.id",)))[:200]
        args = _first(a, ("gen_ai.tool.call.arguments", "tool.parameters", "input.value"))
        call = base._replace(
            type="tool_call", tool=tool, tool_call_id=call_id, arguments_hash=arguments_hash(args)
        )
        made.append(call)
        result = _first(a, ("gen_ai.tool.call.result", "output.value"))
        if result is not None:
            made.append(
                call._replace(
                    event_id=key + ":result",
                    type="tool_result",
                    occurred_at=ended,
                    arguments_hash="",
                    content=_as_text(result),
                    duration_ms=None,
                )
            )
    elif op in INFERENCE:
        made.append(
            base._replace(
                type="reasoning_step",
                content=reasoning_text(span),
                input_tokens=_count(a, *INPUT_TOKENS),
                output_tokens=_count(a, *OUTPUT_TOKENS),
                reasoning_tokens=_count(a, *REASONING_TOKENS),
            )
        )
    else:  # invoke_agent
        made.append(base._replace(type="session_start", content=original_request(span)))
        end = base._replace(occurred_at=ended, duration_ms=None)
        if output := final_output(span):
            made.append(end._replace(event_id=key + ":final", type="final_action", content=output))
        if span.end_ns:
            made.append(end._replace(event_id=key + ":end", type="session_end"))
    # The texts are decoded: a real NUL counts, a backslash followed by "u0000" does not. The
    # attributes are JSON text, where a NUL is an escape (`json_has_nul` tells them apart).
    texts = (base.session_key, made[0].tool_call_id, *(r.content for r in made), made[0].tool)
    if any("\x00" in text for text in texts) or json_has_nul(attributes):
        return "invalid_field", "Text may not contain NUL (U+0000) characters.", ""
    return made
