"""Whole numbers from the text clients send (query parameters, headers).

One rule for every place that reads one: ASCII digits only (str.isdigit() also takes "²",
which int() then refuses), and no int() of an arbitrarily long string (Python refuses more
than 4,300 digits with a ValueError, and a long one is slow to convert anyway).
"""

import re

_DIGITS = re.compile(r"[0-9]+")
# Longer digit strings read as this: beyond any page, window, size or id we accept.
SATURATED = 10**18


def whole_number(raw: str | None) -> int | None:
    """`raw` as a whole number (0 or more), None when it is not ASCII digits; a number longer
    than 18 digits reads as SATURATED, so callers' upper bounds refuse it."""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    return SATURATED if len(raw) > 18 else int(raw)
