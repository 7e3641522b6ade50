"""Rate limits that hold when several processes serve one client.

DRF's SimpleRateThrottle keeps a list of request times per client, reads it, appends and
writes it back. Two workers serving the same token at once both read the same list, both
pass, and one of the two entries is lost, so a client that spreads its requests over the
workers gets well past its limit. `AtomicRateThrottle` keeps DRF's throttle interface (rates
as "N/period", `wait()`, the 429 handling) but counts with the cache's atomic increment
(INCR on Redis), as a sliding-window counter: this window's count plus the previous window's,
weighted by how much of it still lies within the last `duration` seconds. A refused request
is taken back out, so, as with DRF's, only allowed requests use up the rate.
"""

from __future__ import annotations

import math

from rest_framework.throttling import SimpleRateThrottle


class AtomicRateThrottle(SimpleRateThrottle):
    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        window = math.floor(now / self.duration)
        current_key = f"{self.key}:{window}"
        count = self._increment(current_key)
        previous = self.cache.get(f"{self.key}:{window - 1}", 0)
        elapsed = now - window * self.duration
        weight = 1 - elapsed / self.duration
        if previous * weight + count <= self.num_requests:
            return True
        self.cache.decr(current_key)
        self._retry_after = self._seconds_until_allowed(count - 1, previous, elapsed)
        return False

    def _increment(self, key: str) -> int:
        # Kept for two windows: the next window still weighs this one.
        self.cache.add(key, 0, timeout=2 * self.duration + 1)
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between add and incr (a clock jump): start it again
            self.cache.add(key, 0, timeout=2 * self.duration + 1)
            return self.cache.incr(key)

    def _seconds_until_allowed(self, count: int, previous: int, elapsed: float) -> float:
        """When one more request would fit, given this window's allowed `count`."""
        limit, duration = self.num_requests, self.duration
        left_in_window = duration - elapsed
        room = limit - count - 1  # what the previous window's weighted count may still be
        if previous > 0 and room >= 0:
            wait = duration * (1 - room / previous) - elapsed
            if wait < left_in_window:
                return max(wait, 0.0)
        # Next window: this one's count, weighted down as it slides out, plus the new request.
        if count <= 0:
            return left_in_window
        return left_in_window + max(0.0, duration * (1 - (limit - 1) / count))

    def wait(self) -> float | None:
        return getattr(self, "_retry_after", None)
