"""Mandate's own JSON batch format: typed decoding with msgspec, validation per item.

A batch is `{"events": [ … ]}`. The whole batch is decoded against the typed structs first
(the common, all-valid case costs one C-level pass); only when that fails is each item decoded
on its own, so a bad item is rejected with a reason while the others are kept. msgspec refuses
a whole body for one unpaired UTF-16 surrogate escape (`"\\ud83d"`, a string cut inside an
emoji); only then is the body read again by the standard library, and the items holding one
are rejected (`invalid_field`), as an item holding a NUL is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from governance.ingest.access import IngestToken, workload_ids_for
from governance.ingest.records import (
    EARLIEST,
    MAX_CLOCK_SKEW,
    MAX_INT,
    EventRow,
    Rejection,
    arguments_hash,
    has_nul,
    json_decode_keeping_surrogates,
    json_has_nul,
    printable_id,
    surrogate_message,
    timestamp_problem,
    unpaired_surrogate,
)
from governance.ingest.store import Repeat

MAX_EVENTS = 1000
EventTypeName = Literal[
    "session_start", "reasoning_step", "tool_call", "tool_result", "final_action", "session_end"
]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
TOOL_TYPES = frozenset({"tool_call", "tool_result"})


class NativeEvent(msgspec.Struct, kw_only=True, gc=False, forbid_unknown_fields=True):
    event_id: Id
    type: EventTypeName
    session_id: Id
    workload: Slug
    occurred_at: AwareDatetime
    tool: Annotated[str, msgspec.Meta(max_length=80)] = ""
    tool_call_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    arguments: Any = None
    content: str = ""
    input_tokens: Count = 0
    output_tokens: Count = 0
    reasoning_tokens: Count = 0
    duration_ms: Count | None = None
    # Kept as the client's JSON text (checked to be an object): no decode/encode round trip.
    attributes: msgspec.Raw = msgspec.Raw(b"{}")


class NativeBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[NativeEvent]


class RawBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


class BatchInvalid(Exception):
    """The body as a whole is not a batch: answered with 400."""


class BatchTooLarge(Exception):
    """More events than MAX_EVENTS: answered with 413."""


_decode_batch = msgspec.json.Decoder(NativeBatch).decode
_decode_raw_batch = msgspec.json.Decoder(RawBatch).decode
_decode_event = msgspec.json.Decoder(NativeEvent).decode
_encode_exact = msgspec.json.Encoder(decimal_format="number").encode  # Decimals as parsed
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]*)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")


def _decode_error(error: msgspec.MsgspecError) -> tuple[str, str]:
    """(code, field) for a msgspec error on one item."""
    message = str(error)
    if missing := _MISSING.match(message):
        return "missing_field", missing.group(1)
    if unknown := _UNKNOWN.match(message):  # refused, not dropped: put extras in `attributes`
        return "unknown_field", unknown.group(1)
    at = _AT.search(message)
    field = at.group(1).split(".")[0].split("[")[0] if at else ""
    if field == "type":
        return "unknown_type", field
    if field == "occurred_at":
        return "bad_timestamp", field
    if not field and message.startswith("Expected `object`"):
        return "invalid_event", ""
    return "invalid_field", field


def decode_native_batch(
    body: bytes, *, token: IngestToken, now: datetime, max_events: int = MAX_EVENTS
) -> tuple[list[EventRow], list[Rejection], int]:
    """Records to store, rejected items, and the number of items in the batch."""
    items: list[NativeEvent | Rejection]
    try:
        items = list(_decode_batch(body).events)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        raw_items = _raw_items(body)
        if len(raw_items) > max_events:
            raise BatchTooLarge(len(raw_items)) from None
        items = []
        for index, raw in enumerate(raw_items):
            if type(raw) is Rejection:
                items.append(raw)
                continue
            try:
                items.append(_decode_event(raw))
            except msgspec.ValidationError as error:
                code, field = _decode_error(error)
                event_id = _event_id_of(raw)
                items.append(Rejection(index, event_id, code, str(error), field))
    if len(items) > max_events:
        raise BatchTooLarge(len(items))

    check_nul = b"\\u0000" in body  # a guard; also true for a backslash then "u0000"
    slugs = {item.workload for item in items if item.__class__ is NativeEvent}
    workload_ids = workload_ids_for(slugs)
    all_workloads, bound = token.all_workloads, token.workload_ids
    earliest, latest = EARLIEST, now + MAX_CLOCK_SKEW
    records: list[EventRow] = []
    rejected: list[Rejection] = []
    append = records.append
    first_seen: dict[tuple[int, str], int] = {}  # (workload, event id) -> its item's index
    # The hot loop: plain tuples (EventRecord's field order), every check inline; the slow
    # path (`_problem`) only runs for an item that fails one, to say why.
    for index, item in enumerate(items):
        if type(item) is Rejection:  # as quick as `.__class__`, and the type checker narrows it
            rejected.append(item)
            continue
        workload_id = workload_ids.get(item.workload)
        if (
            workload_id is None
            or not (all_workloads or workload_id in bound)
            or not (earliest <= item.occurred_at <= latest)
            or (not item.tool and item.type in TOOL_TYPES)
            or (attributes := bytes(item.attributes))[:1] != b"{"
            or (check_nul and _has_nul_text(item))
        ):
            code, field, message = _problem(item, token, workload_ids, now)
            rejected.append(Rejection(index, item.event_id, code, message, field))
            continue
        # An id twice in one batch is the client's mistake, and only one copy could be stored:
        # the later copy is refused by name rather than counted as accepted and dropped.
        key = (workload_id, item.event_id)
        if key in first_seen:
            message = f"The event id is used by item {first_seen[key]} of this batch."
            code = "duplicate_event_id"
            rejected.append(Rejection(index, item.event_id, code, message, "event_id"))
            continue
        first_seen[key] = index
        arguments = item.arguments
        append(
            (
                workload_id,
                item.session_id,
                item.event_id,
                item.type,
                item.occurred_at,
                item.tool,
                item.tool_call_id,
                "" if arguments is None else arguments_hash(arguments),
                item.content,
                item.input_tokens,
                item.output_tokens,
                item.reasoning_tokens,
                item.duration_ms,
                attributes.decode(),
            )
        )
    return records, rejected, len(items)


def _raw_items(body: bytes) -> list[msgspec.Raw | Rejection]:
    """The batch's items undecoded, for decoding one by one; an item holding an unpaired
    surrogate escape is already rejected (msgspec refuses the whole body for one)."""
    try:
        return list(_decode_raw_batch(body).events)
    except msgspec.ValidationError as error:
        raise BatchInvalid(f'Expected {{"events": [ … ]}}: {error}') from None
    except msgspec.DecodeError as error:
        return _raw_items_around_surrogates(body, error)
    except RecursionError:
        raise BatchInvalid("The body nests too deeply.") from None


def _raw_items_around_surrogates(
    body: bytes, error: msgspec.DecodeError
) -> list[msgspec.Raw | Rejection]:
    """Only for a body msgspec cannot read: when that is because of unpaired surrogates in
    some events, those events are rejected and the others encoded again to be read as usual.
    Anything else stays a 400 with msgspec's reason."""
    unreadable = BatchInvalid(f"The body is not valid JSON: {error}")
    try:
        document = json_decode_keeping_surrogates(body, exact_numbers=True)
    except ValueError:
        raise unreadable from None
    except RecursionError:
        raise BatchInvalid("The body nests too deeply.") from None
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise unreadable
    rejected: dict[int, Rejection] = {}
    for index, item in enumerate(events):
        if found := unpaired_surrogate(item):
            where = found[0]
            field = where[2:].split(".", 1)[0].split("[", 1)[0]
            event_id = item.get("event_id") if isinstance(item, dict) else None
            event_id = printable_id(event_id)[:200] if isinstance(event_id, str) else ""
            message = surrogate_message(found)
            rejected[index] = Rejection(index, event_id, "invalid_field", message, field)
            events[index] = None  # read as null below, then replaced by its rejection
    if not rejected:  # a surrogate outside the events, or not the reason at all
        raise unreadable
    try:
        raw_items = _decode_raw_batch(_encode_exact(document)).events
    except UnicodeEncodeError:  # a surrogate outside the events (a key beside "events")
        raise unreadable from None
    except msgspec.ValidationError as invalid:
        raise BatchInvalid(f'Expected {{"events": [ … ]}}: {invalid}') from None
    return [rejected.get(index, raw) for index, raw in enumerate(raw_items)]


def batch_answer(
    *, total: int, rejected: list[Rejection], records: list[EventRow], repeats: Sequence[Repeat]
) -> dict[str, Any]:
    """The per-item answer. `accepted` counts the items stored now or before: a replay of a
    stored event is accepted again, and listed in `duplicates` (not stored twice); an item
    reusing a stored id for a different event is rejected (`event_id_reused`)."""
    duplicates: list[dict[str, Any]] = []
    if repeats:  # records follow the items in order, skipping the rejected ones
        skipped = {rejection.position for rejection in rejected}
        indexes = [index for index in range(total) if index not in skipped]
        for position, problem in repeats:
            index, event_id = indexes[position], records[position][2]
            if problem:
                rejection = Rejection(index, event_id, "event_id_reused", problem, "event_id")
                rejected.append(rejection)
            else:
                duplicates.append({"index": index, "event_id": event_id})
        rejected.sort(key=attrgetter("position"))
    return {
        "accepted": total - len(rejected),
        "rejected": [rejection.as_dict() for rejection in rejected],
        "duplicates": duplicates,
    }


def _has_nul_text(item: NativeEvent) -> bool:
    return (
        has_nul(item.event_id)
        or has_nul(item.session_id)
        or has_nul(item.tool)
        or has_nul(item.tool_call_id)
        or has_nul(item.content)
        or json_has_nul(bytes(item.attributes))
    )


def _problem(
    item: NativeEvent, token: IngestToken, workload_ids: dict, now: datetime
) -> tuple[str, str, str]:
    """Why an item failed the inline checks: (code, field, message)."""
    workload_id = workload_ids.get(item.workload)
    if workload_id is None and token.all_workloads:
        return "unknown_workload", "workload", f"No workload {item.workload!r}."
    if workload_id is None or not token.may_report_for(workload_id):
        # A bound token is told the same about a slug that does not exist as about one it
        # may not report for: it cannot probe the catalogue (decisions answer alike).
        return (
            "workload_not_bound",
            "workload",
            f"This token may not report for workload {item.workload!r}.",
        )
    if message := timestamp_problem(item.occurred_at, now):
        return "bad_timestamp", "occurred_at", message
    if item.type in TOOL_TYPES and not item.tool:
        return "missing_field", "tool", f"A {item.type} event names its tool."
    if bytes(item.attributes)[:1] != b"{":
        return "invalid_field", "attributes", "Expected `object` - at `$.attributes`"
    return "invalid_field", "", "Text may not contain NUL (U+0000) characters."


def _event_id_of(raw: msgspec.Raw) -> str:
    """The event id of an item that failed to decode, when it has a readable one."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ""
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id[:200] if isinstance(event_id, str) else ""
