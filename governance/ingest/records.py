"""The one row shape both front doors (native JSON, OTLP) produce, and what they share."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, final

import msgspec

MAX_INT = 2**31 - 1  # PositiveIntegerField on PostgreSQL
# Clocks drift; an event stamped further ahead than this is a client bug, not a future fact.
MAX_CLOCK_SKEW = timedelta(hours=1)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

_encode_sorted = msgspec.json.Encoder(order="sorted").encode


class EventRecord(NamedTuple):
    """One event ready to store; field order is the staging table's column order."""

    workload_id: int
    session_key: str
    event_id: str
    type: str
    occurred_at: datetime
    tool: str
    tool_call_id: str
    arguments_hash: str
    content: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    duration_ms: int | None
    attributes: str  # JSON object text


# EventRecord as a plain tuple: the native decoder's hot loop builds these without the
# NamedTuple constructor, and the store takes either (every EventRecord is one).
EventRow = tuple[int, str, str, str, datetime, str, str, str, str, int, int, int, int | None, str]


# Every code a native event's rejection may carry (`Rejection.code`), in the order the API
# documents them: the schema's enum is this list, and tests/ingest/test_rejection_codes.py
# reads the ingest modules to prove no code is emitted that is missing here. Add a new code
# here when you add it there.
REJECTION_CODES = (
    "missing_field",
    "unknown_field",
    "invalid_field",
    "invalid_event",
    "unknown_type",
    "bad_timestamp",
    "unknown_workload",
    "workload_not_bound",
    "duplicate_event_id",
    "event_id_reused",
)


@final  # never subclassed: lets `type(item) is Rejection` narrow both ways, as fast as it is
class Rejection(NamedTuple):
    """Why one item (an event, or an OTLP span) was not stored."""

    position: int  # the item's index in the batch (not `index`: that is tuple.index)
    event_id: str
    code: str
    message: str
    field: str = ""

    def as_dict(self) -> dict[str, Any]:
        item = {"index": self.position, "event_id": self.event_id, "code": self.code}
        if self.field:
            item["field"] = self.field
        item["message"] = self.message
        return item


def arguments_hash(arguments: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, compact) of a tool call's arguments.

    A JSON string is parsed first, so `'{"b":1,"a":2}'` and `{"a":2,"b":1}` hash alike;
    a string that is not JSON is hashed as that string. No arguments hash to "".
    """
    if arguments is None:
        return ""
    if isinstance(arguments, (bytes, str)):
        with contextlib.suppress(msgspec.DecodeError):
            arguments = msgspec.json.decode(arguments)
    return hashlib.sha256(_encode_sorted(arguments)).hexdigest()


def timestamp_problem(moment: datetime, now: datetime) -> str:
    """An error message when a timestamp cannot be a real event time, else ""."""
    if moment < EARLIEST:
        return "The timestamp is before 2000-01-01."
    if moment > now + MAX_CLOCK_SKEW:
        return "The timestamp is more than an hour in the future."
    return ""


def has_nul(value: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold U+0000; such items are rejected, not truncated."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


# `\u0000` as an escape in JSON text: preceded by an even number of backslashes (none counts),
# so the escaped backslash of the text `\\u0000` (six characters, no NUL) does not match.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_NUL_ESCAPE_BYTES = re.compile(_NUL_ESCAPE.pattern.encode())


def json_has_nul(text: str | bytes) -> bool:
    """Whether JSON text holds a NUL, i.e. the escape `\\u0000`: jsonb cannot store one."""
    if isinstance(text, bytes):
        return _NUL_ESCAPE_BYTES.search(text) is not None
    return _NUL_ESCAPE.search(text) is not None


# A decoder that meets a `\ud83d` escape with no low half after it (JavaScript's
# JSON.stringify writes one for a string cut inside an emoji) yields a lone surrogate: no
# Unicode character, so it can be neither encoded as UTF-8 nor stored.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unpaired_surrogate(value: Any, where: str = "$") -> tuple[str, str] | None:
    """(where, `\\uXXXX`) for the first text in a decoded JSON value that holds an unpaired
    UTF-16 surrogate, else None. A key holding one is reported at its object. Walked with a
    stack, not recursion: the standard library decodes nesting deeper than Python recurses."""
    pending: list[tuple[Any, str]] = [(value, where)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            if surrogate := _SURROGATE.search(item):
                return at, f"\\u{ord(surrogate.group()):04x}"
        elif isinstance(item, dict):
            children: list[tuple[Any, str]] = []
            for key, child in item.items():
                children += [(key, at), (child, f"{at}.{key}")]
            pending.extend(reversed(children))  # first key first, as a recursive walk reads
        elif isinstance(item, list):
            pending.extend((item[n], f"{at}[{n}]") for n in range(len(item) - 1, -1, -1))
    return None


def json_decode_keeping_surrogates(body: bytes, *, exact_numbers: bool = False) -> Any:
    """The body decoded by the standard library, which (unlike msgspec) reads an unpaired
    surrogate escape into a lone surrogate instead of refusing the whole document. Only for a
    body msgspec refused: callers reject the items that hold one (`unpaired_surrogate`).
    NaN and Infinity stay refused, as msgspec refuses them. With `exact_numbers`, numbers
    are Decimals, so encoding them again (msgspec's decimal_format="number") keeps their
    text. Raises ValueError (not UTF-8, not JSON) or RecursionError."""
    text = body.decode("utf-8")
    if exact_numbers:
        return json.loads(text, parse_constant=_refuse, parse_int=Decimal, parse_float=Decimal)
    return json.loads(text, parse_constant=_refuse)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def surrogate_message(found: tuple[str, str]) -> str:
    where, escape = found
    return (
        f"Text may not contain an unpaired UTF-16 surrogate ({escape}: half a character, as "
        f"when a string is cut inside an emoji) - at `{where}`"
    )


def printable_id(text: str) -> str:
    """An id as it can be answered: unpaired surrogates written as `\\uXXXX` escapes."""
    return text.encode("utf-8", "backslashreplace").decode()
