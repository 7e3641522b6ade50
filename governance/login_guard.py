"""Failed logins are limited, so a password cannot be guessed at the speed of the server.

Failures are counted in the cache (Redis in production, shared by every web process; the
increment is atomic) over a sliding window of LOGIN_FAILURE_WINDOW seconds, estimated as
this window's count plus the previous one's weighed by how much of it is still within reach
(an estimate: a patient guesser can fit somewhat more than the limit into one window's
length, never two whole limits back to back as fixed windows allowed):
- per username and client address, LOGIN_FAILURES_PER_USER: stops guessing one account,
  without letting someone elsewhere lock its owner out;
- per client address, LOGIN_FAILURES_PER_ADDRESS: stops trying many accounts.
An attempt over either limit is refused before the password is checked. A successful login
clears its username's count. The client address is REMOTE_ADDR, or the header named by
LOGIN_CLIENT_IP_HEADER when a proxy you trust sets it (any client could send one itself).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    header = settings.LOGIN_CLIENT_IP_HEADER
    if header and request.META.get(header):
        # The last entry: in a list such as X-Forwarded-For it is the one your proxy added;
        # the ones before it are whatever the client sent.
        return request.META[header].split(",")[-1].strip()[:64]
    return request.META.get("REMOTE_ADDR", "")[:64]


def _counters(username: str, address: str) -> tuple[tuple[str, str, int], ...]:
    """(this window's key, the previous window's key, limit) per counter."""
    window = int(time.time() // settings.LOGIN_FAILURE_WINDOW)
    who = hashlib.sha256(f"{username.strip().lower()}\x1f{address}".encode()).hexdigest()[:32]
    where = hashlib.sha256(address.encode()).hexdigest()[:32]
    return tuple(
        (
            f"login-failures:{kind}:{window}:{digest}",
            f"login-failures:{kind}:{window - 1}:{digest}",
            limit,
        )
        for kind, digest, limit in (
            ("user", who, settings.LOGIN_FAILURES_PER_USER),
            ("address", where, settings.LOGIN_FAILURES_PER_ADDRESS),
        )
    )


def _estimate(current: int, previous: int, elapsed: float) -> float:
    """Failures in the last window's length, sliding: the previous window's count weighs as
    much of it as still lies within reach. Fixed windows alone let an attacker spend a whole
    limit at a window's end and another at the next one's start."""
    return current + previous * (1 - elapsed / settings.LOGIN_FAILURE_WINDOW)


def _wait(current: int, previous: int, elapsed: float, limit: int) -> float:
    """Seconds until the estimate falls below `limit` (0 when it is below now)."""
    size = settings.LOGIN_FAILURE_WINDOW
    if _estimate(current, previous, elapsed) < limit:
        return 0
    if current >= limit:
        # Below the limit only once this window is the previous one and has slid far enough.
        return size - elapsed + size * (1 - limit / current)
    return size * (1 - (limit - current) / previous) - elapsed


def login_wait(*, username: str, address: str) -> int:
    """Seconds until this username may try again from this address (0: now)."""
    counters = _counters(username, address)
    counts = cache.get_many([key for counter in counters for key in counter[:2]])
    elapsed = time.time() % settings.LOGIN_FAILURE_WINDOW
    wait = max(
        _wait(counts.get(current, 0), counts.get(previous, 0), elapsed, limit)
        for current, previous, limit in counters
    )
    return math.ceil(wait) + 1 if wait > 0 else 0


def login_failure_record(*, username: str, address: str) -> bool:
    """Count a failed attempt; True when it is the one that reaches a limit."""
    reached = False
    elapsed = time.time() % settings.LOGIN_FAILURE_WINDOW
    for current, previous, limit in _counters(username, address):
        # Kept two windows: the next window still weighs this one's count.
        cache.add(current, 0, timeout=2 * settings.LOGIN_FAILURE_WINDOW)
        try:
            count = cache.incr(current)
        except ValueError:  # expired between add and incr: this is the window's first
            cache.set(current, 1, timeout=2 * settings.LOGIN_FAILURE_WINDOW)
            count = 1
        before = cache.get(previous, 0)
        if _estimate(count, before, elapsed) >= limit > _estimate(count - 1, before, elapsed):
            # Audited once a window: the estimate can dip under the limit and cross it again
            # as the window slides, and each crossing is not a new lockout.
            marker = f"login-locked:{current}"
            reached = cache.add(marker, 1, timeout=settings.LOGIN_FAILURE_WINDOW) or reached
    logger.warning("failed login for %r from %s", username[:150], address)
    return reached


def login_success_record(*, username: str, address: str) -> None:
    current, previous, _limit = _counters(username, address)[0]
    cache.delete_many([current, previous])
