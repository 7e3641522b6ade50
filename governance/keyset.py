"""Keyset ("seek") pagination for the append-only logs, newest first.

The audit and decision logs only grow. With OFFSET, page n reads and throws away n pages of
index entries first, so the older a page, the slower it is; and a COUNT(*) of the whole
filtered log costs more with every row. A keyset page starts from the last row shown instead
("older than this decided_at and id"), so every page is one index range scan of one page of
rows, however deep. The cursor is the sort key of the row at the edge of the page, as plain
integers (a timestamp as microseconds since the epoch), so it survives a URL untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import DateTimeField, F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BIGINT = 2**63 - 1
CURSOR_PART = re.compile(r"[0-9]{1,20}")  # 2**64 has 20 digits


@dataclass(frozen=True, slots=True)
class KeysetPage:
    rows: list
    older: str | None  # cursor of the next page towards the oldest row, if there is one
    newer: str | None  # cursor of the previous page towards the newest row, if there is one
    refused_cursor: bool = False  # the cursor given was not one of ours: this is the newest

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class BadCursor(ValueError):
    pass


def keyset_page_from_request(
    queryset: QuerySet, request, *, fields: tuple[str, ...], size: int
) -> KeysetPage:
    """The page a request's `before` / `after` asks for; the newest page, marked, when the
    cursor is not one of ours (an edited or truncated link)."""
    try:
        return keyset_page(
            queryset,
            fields=fields,
            size=size,
            before=request.GET.get("before"),
            after=request.GET.get("after"),
        )
    except BadCursor:
        page = keyset_page(queryset, fields=fields, size=size)
        return KeysetPage(page.rows, page.older, page.newer, refused_cursor=True)


def keyset_page(
    queryset: QuerySet,
    *,
    fields: tuple[str, ...],
    size: int,
    before: str | None = None,
    after: str | None = None,
) -> KeysetPage:
    """One page of `queryset` in descending order of `fields` (which must end in a unique
    field): the newest rows, the rows older than cursor `before`, or newer than `after`.
    Raises BadCursor for a cursor that is not one of ours."""
    descending = queryset.order_by(*(f"-{name}" for name in fields))
    if after:
        ascending = queryset.order_by(*fields).filter(past_cursor(queryset, fields, after, "gt"))
        rows = list(ascending[: size + 1])
        if len(rows) > size:  # more newer rows than a page: show the page just above the cursor
            rows = rows[:size][::-1]
            return KeysetPage(rows, cursor_of(rows[-1], fields), cursor_of(rows[0], fields))
        # Fewer than a page above the cursor: that is the newest page; start from the top.
        before = None
    if before:
        rows = list(descending.filter(past_cursor(queryset, fields, before, "lt"))[: size + 1])
        newer = cursor_of(rows[0], fields) if rows else before
    else:
        rows = list(descending[: size + 1])
        newer = None
    older = cursor_of(rows[size - 1], fields) if len(rows) > size else None
    return KeysetPage(rows[:size], older, newer)


def cursor_of(row, fields: tuple[str, ...]) -> str:
    parts = []
    for name in fields:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = (value - EPOCH) // timedelta(microseconds=1)
        parts.append(str(value))
    return "-".join(parts)


def past_cursor(queryset: QuerySet, fields: tuple[str, ...], cursor: str, lookup: str):
    """Rows past `cursor` in lexicographic order of `fields` (lookup "lt" or "gt")."""
    parts = cursor.split("-")
    # ASCII digits only: str.isdigit() also takes "²", which int() then rejects.
    if len(parts) != len(fields) or not all(CURSOR_PART.fullmatch(part) for part in parts):
        raise BadCursor(cursor)
    values: list[datetime | int] = []
    for name, part in zip(fields, parts, strict=True):
        is_time = isinstance(queryset.model._meta.get_field(name), DateTimeField)
        try:
            value = EPOCH + timedelta(microseconds=int(part)) if is_time else int(part)
        except (OverflowError, ValueError) as error:
            raise BadCursor(cursor) from error
        if isinstance(value, int) and value > MAX_BIGINT:
            raise BadCursor(cursor)
        values.append(value)
    # A row comparison, (decided_at, id) < (x, y): PostgreSQL reads it as a range of the
    # (decided_at DESC, id DESC) index. The same condition spelled a < x OR (a = x AND b < y)
    # is only a filter, so a page 100,000 rows back read those 100,000 rows first (11 ms
    # instead of 0.07). Django's tuple lookups (as used by composite primary keys) write it.
    columns = Tuple(*(F(name) for name in fields))
    comparison = TupleLessThan if lookup == "lt" else TupleGreaterThan
    return comparison(columns, tuple(values))
