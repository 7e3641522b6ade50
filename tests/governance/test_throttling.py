"""The API's rate limits count atomically, so several workers cannot be used to get past them."""

import os
import threading
import uuid

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from governance.throttling import AtomicRateThrottle

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
WINDOW_START = 1_000_020.0  # a multiple of 60: a minute window starts here


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def throttle_for(cache, *, rate: str, clock=None, ident: str | None = None):
    class Throttle(AtomicRateThrottle):
        scope = "test"

        def get_rate(self):
            return rate

        def get_cache_key(self, request, view):
            return f"throttle_test_{ident}"

    Throttle.cache = cache
    if clock is not None:
        Throttle.timer = staticmethod(clock)
    return Throttle()


@pytest.fixture
def locmem():
    return LocMemCache(f"throttle-{uuid.uuid4().hex}", {})


def test_it_allows_the_rate_then_refuses(locmem):
    clock = Clock(WINDOW_START)
    throttle = throttle_for(locmem, rate="3/min", clock=clock, ident="a")
    assert [throttle.allow_request(None, None) for _ in range(4)] == [True, True, True, False]
    other = throttle_for(locmem, rate="3/min", clock=clock, ident="b")
    assert other.allow_request(None, None)


def test_a_refused_request_does_not_use_up_the_rate(locmem):
    clock = Clock(WINDOW_START + 20)  # 20 s into a minute window
    throttle = throttle_for(locmem, rate="2/min", clock=clock, ident="a")
    assert throttle.allow_request(None, None) and throttle.allow_request(None, None)
    for _ in range(5):
        assert not throttle.allow_request(None, None)
    clock.now += 40  # the next window: the two allowed ones weigh 2 * (1 - 0/60)
    assert not throttle.allow_request(None, None)
    clock.now += 30  # half-way: 2 * 0.5 + 1 = 2, within the rate (five refusals not counted)
    assert throttle.allow_request(None, None)


def test_the_previous_window_counts_in_proportion_to_its_overlap(locmem):
    clock = Clock(WINDOW_START + 50)
    throttle = throttle_for(locmem, rate="10/min", clock=clock, ident="a")
    for _ in range(10):
        assert throttle.allow_request(None, None)
    clock.now += 10  # the next window starts: a burst at the boundary is not a fresh 10
    assert not throttle.allow_request(None, None)
    clock.now += 6  # 6 s in: 10 * 0.9 = 9, room for exactly one
    assert throttle.allow_request(None, None)
    assert not throttle.allow_request(None, None)


def test_it_says_how_long_to_wait_and_that_is_when_a_request_fits(locmem):
    clock = Clock(WINDOW_START + 30)
    throttle = throttle_for(locmem, rate="4/min", clock=clock, ident="a")
    for _ in range(4):
        assert throttle.allow_request(None, None)
    assert not throttle.allow_request(None, None)
    wait = throttle.wait()
    assert 30 < wait <= 60 + 15
    clock.now += wait - 0.5
    assert not throttle.allow_request(None, None)
    clock.now += 0.5
    assert throttle.allow_request(None, None)


@pytest.mark.redis
def test_concurrent_clients_on_several_connections_never_exceed_the_rate():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.3).ping()
    except (redis.exceptions.RedisError, OSError):
        pytest.skip("no Redis reachable")
    ident = uuid.uuid4().hex
    allowed = []
    start = threading.Barrier(8)

    def client():
        # Its own cache object, so its own connection: as separate worker processes have.
        cache = RedisCache(REDIS_URL, {"KEY_PREFIX": "throttle-test"})
        throttle = throttle_for(cache, rate="100/hour", ident=ident)
        start.wait()
        allowed.append(sum(throttle.allow_request(None, None) for _ in range(40)))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100
