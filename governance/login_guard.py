"""Failed logins are limited, so a password cannot be guessed at the speed of the server.

Failures are counted in the cache (Redis in production, shared by every web process; the
increment is atomic) in fixed windows of LOGIN_FAILURE_WINDOW seconds:
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


def _keys(username: str, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
    window = int(time.time() // settings.LOGIN_FAILURE_WINDOW)
    who = hashlib.sha256(f"{username.strip().lower()}\x1f{address}".encode()).hexdigest()[:32]
    where = hashlib.sha256(address.encode()).hexdigest()[:32]
    return (
        (f"login-failures:user:{window}:{who}", settings.LOGIN_FAILURES_PER_USER),
        (f"login-failures:address:{window}:{where}", settings.LOGIN_FAILURES_PER_ADDRESS),
    )


def login_wait(*, username: str, address: str) -> int:
    """Seconds until this username may try again from this address (0: now)."""
    keys = _keys(username, address)
    counts = cache.get_many([key for key, _limit in keys])
    if any(counts.get(key, 0) >= limit for key, limit in keys):
        window = settings.LOGIN_FAILURE_WINDOW
        return max(1, int(window - time.time() % window))
    return 0


def login_failure_record(*, username: str, address: str) -> bool:
    """Count a failed attempt; True when it is the one that reaches a limit."""
    reached = False
    for key, limit in _keys(username, address):
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: this is the window's first
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW)
            count = 1
        reached = reached or count == limit
    logger.warning("failed login for %r from %s", username[:150], address)
    return reached


def login_success_record(*, username: str, address: str) -> None:
    user_key, _limit = _keys(username, address)[0]
    cache.delete(user_key)
