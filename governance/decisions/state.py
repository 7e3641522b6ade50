"""Session state for decisions: tools used, call count, window start — checked and recorded
atomically in one round trip.

Production (REDIS_URL set): `RedisSessionStore`. One Lua script per session check compares the
caller's policy version with the published one, reads the session's hash, applies the same
rules as `evaluator.session_verdict`, and records the call only when it is allowed. Redis runs
a script alone, so concurrent calls for one session (from any number of processes) are
serialised and the budget cannot be overrun. A single check goes over `redis_wire` (one send,
one receive, no pool or retry layers); a batch sends all its session checks in one redis-py
pipeline: still one round trip.

Embedded default (no REDIS_URL): `LocalSessionStore`, the same interface over a dict and a
lock. It is correct for the single web process the run command starts, and only for that:
several processes each keep their own sessions (documented in bench/README.md).
"""

from __future__ import annotations

import threading
import time

from governance.decisions.evaluator import (
    SessionPlan,
    SessionState,
    combination_code,
    session_verdict,
)
from governance.decisions.redis_wire import ScriptMissing, ScriptWire, WireError, wire_for_url


class StateUnavailable(Exception):
    """The shared session state cannot be reached: the caller must fail closed."""


class StaleVersion(Exception):
    """The published policy version differs from the caller's snapshot."""

    def __init__(self, published: int):
        super().__init__(f"published policy version is {published}")
        self.published = published


# One result per session check: (reason code, detail, session started_at, calls so far).
CheckResult = tuple[str, str, float, int]

# A session is one string, `started|last|calls|,label,label,` (read with one GET, written with
# one SET that also sets the expiry): cheaper in Redis than a hash read with HGETALL and
# written with HSET + EXPIRE. The expiry is renewed on every allowed call from the plan in
# force, so a window raised by an extension keeps the session (and the tools it used).
SESSION_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then return {'stale', v or '0', 0, ''} end
local now = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[2])
local s, calls, used
if raw then
  local a = string.find(raw, '|', 1, true)
  local b = string.find(raw, '|', a + 1, true)
  local c = string.find(raw, '|', b + 1, true)
  s = string.sub(raw, 1, a - 1)
  calls = tonumber(string.sub(raw, b + 1, c - 1))
  used = string.sub(raw, c + 1)
  if now - tonumber(s) >= tonumber(ARGV[3]) then return {'session_expired', s, calls, ''} end
  if now - tonumber(string.sub(raw, a + 1, b - 1)) >= tonumber(ARGV[4]) then
    return {'session_idle', s, calls, ''}
  end
else
  s = ARGV[2]; calls = 0; used = ','
  if 0 >= tonumber(ARGV[3]) then return {'session_expired', s, calls, ''} end
end
if calls >= tonumber(ARGV[5]) then return {'tool_call_budget_exhausted', s, calls, ''} end
local mine = ARGV[7]
for i = 8, #ARGV do
  local rule = ARGV[i]
  local bar = string.find(rule, '|', 1, true)
  local with_all, before_all = true, true
  for group in string.gmatch(string.sub(rule, bar + 1), '[^;]+') do
    local hit_before, hit_with = false, false
    for label in string.gmatch(group, '[^,]+') do
      local needle = ',' .. label .. ','
      if string.find(used, needle, 1, true) then hit_before = true; hit_with = true; break end
      if string.find(mine, needle, 1, true) then hit_with = true end
    end
    if not hit_with then with_all = false end
    if not hit_before then before_all = false end
  end
  if with_all and not before_all then
    return {'combination', s, calls, string.sub(rule, 1, bar - 1)}
  end
end
for label in string.gmatch(mine, '[^,]+') do
  if not string.find(used, ',' .. label .. ',', 1, true) then used = used .. label .. ',' end
end
calls = calls + 1
redis.call('SET', KEYS[2], s .. '|' .. ARGV[2] .. '|' .. calls .. '|' .. used, 'EX', ARGV[6])
return {'allowed', s, calls, ''}
"""

PUBLISH_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PUBLISH', KEYS[1], ARGV[1])
  return ARGV[1]
end
return tostring(current)
"""

# The bench's state floor: one EVALSHA that only returns.
FLOOR_SCRIPT = "return 1"


def state_ttl(plan: SessionPlan, now: float) -> int:
    """Seconds a session's state outlives an allowed call: past its window and idle timeout
    (a late call still reads "expired", not a fresh session), and past its approval's end on
    a gated workload (one approval, one run)."""
    ttl = int(plan.max_session_seconds + plan.idle_timeout_seconds) + 60
    if plan.keep_until > now:
        ttl = max(ttl, int(plan.keep_until - now) + 60)
    return ttl


def _combination_code(plan: SessionPlan, slug: str) -> str:
    for rule in plan.rules:
        if rule.slug == slug:
            return combination_code(rule.effect)
    return "combination_forbidden"


def _policy_version_from_db() -> int:
    from governance.policy_version import policy_version_current

    return policy_version_current()


class RedisSessionStore:
    """Session state and the published policy version in Redis."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "mandate:", timeout: float = 0.5):
        import redis

        self._errors = (redis.exceptions.RedisError, OSError)
        self._noscript = redis.exceptions.NoScriptError
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.url = url
        self.prefix = prefix
        self.version_key = f"{prefix}policy_version"
        self._session_sha = self._sha(SESSION_SCRIPT)
        self._publish_sha = self._sha(PUBLISH_SCRIPT)
        self._floor_sha = self._sha(FLOOR_SCRIPT)
        # The single session check and the bench's floor go over the lean wire (TLS: None,
        # then redis-py serves them too).
        self.wire = wire_for_url(url, timeout=timeout)
        self._version_key_bytes = self.version_key.encode()
        self._session_sha_bytes = self._session_sha.encode()
        self._floor_sha_bytes = self._floor_sha.encode()

    @staticmethod
    def _sha(script: str) -> str:
        import hashlib

        return hashlib.sha1(script.encode()).hexdigest()

    def _evalsha(self, sha: str, script: str, keys: list, args: list):
        try:
            return self.client.evalsha(sha, len(keys), *keys, *args)
        except self._noscript:
            self.client.script_load(script)
            return self.client.evalsha(sha, len(keys), *keys, *args)

    def session_key(self, workload: str, session: str) -> str:
        # The braces keep a session on one Redis Cluster slot.
        return f"{self.prefix}session:{{{workload}\x1f{session}}}"

    def _args(self, plan: SessionPlan, now: float, version: int) -> list[bytes]:
        ttl = state_ttl(plan, now)
        return [
            b"%d" % version,
            b"%.3f" % now,
            str(plan.max_session_seconds).encode(),
            str(plan.idle_timeout_seconds).encode(),
            b"%d" % plan.max_tool_calls,
            b"%d" % ttl,
            f",{','.join(plan.labels)},".encode(),
            *[rule.encoded.encode() for rule in plan.rules],
        ]

    def _result(self, plan: SessionPlan, raw) -> CheckResult:
        code = raw[0].decode() if isinstance(raw[0], bytes) else raw[0]
        second = raw[1].decode() if isinstance(raw[1], bytes) else raw[1]
        if code == "stale":
            raise StaleVersion(int(second))
        detail = raw[3].decode() if isinstance(raw[3], bytes) else raw[3]
        if code == "combination":
            return _combination_code(plan, detail), f"Rule: {detail}.", float(second), int(raw[2])
        return code, "", float(second), int(raw[2])

    def _wire_evalsha(self, wire: ScriptWire, sha: bytes, script: str, args: tuple[bytes, ...]):
        try:
            return wire.evalsha(sha, args)
        except ScriptMissing:
            self.client.script_load(script)
            return wire.evalsha(sha, args)

    def _wire_tail(self, plan: SessionPlan, now: float, version: int) -> tuple[bytes, ...]:
        session_key = self.session_key(plan.workload, plan.session).encode()
        return (b"2", self._version_key_bytes, session_key, *self._args(plan, now, version))

    def check(self, items: list[tuple[SessionPlan, float]], version: int) -> list[CheckResult]:
        """Check and record each session call; one round trip for the lot."""
        try:
            if len(items) == 1 and self.wire is not None:
                plan, now = items[0]
                raw = self._wire_evalsha(
                    self.wire,
                    self._session_sha_bytes,
                    SESSION_SCRIPT,
                    self._wire_tail(plan, now, version),
                )
                return [self._result(plan, raw)]
            if len(items) == 1:
                plan, now = items[0]
                raw = self._evalsha(
                    self._session_sha,
                    SESSION_SCRIPT,
                    [self.version_key, self.session_key(plan.workload, plan.session)],
                    self._args(plan, now, version),
                )
                return [self._result(plan, raw)]
            for attempt in (1, 2):
                pipe = self.client.pipeline(transaction=False)
                for plan, now in items:
                    keys = [self.version_key, self.session_key(plan.workload, plan.session)]
                    pipe.evalsha(self._session_sha, 2, *keys, *self._args(plan, now, version))
                try:
                    raws = pipe.execute()
                    break
                except self._noscript:
                    if attempt == 2:
                        raise
                    self.client.script_load(SESSION_SCRIPT)
            return [self._result(plan, raw) for (plan, _now), raw in zip(items, raws, strict=True)]
        except (*self._errors, WireError) as exc:
            raise StateUnavailable(str(exc)) from exc

    def published_version(self, *, authoritative: bool = False) -> int:
        """The version every process should decide with. Authoritative: read the database
        (the source of truth) and publish it first."""
        try:
            if authoritative:
                return self.publish(_policy_version_from_db())
            value = self.client.get(self.version_key)
            if value is None:
                return self.publish(_policy_version_from_db())
            return int(value)
        except self._errors as exc:
            raise StateUnavailable(str(exc)) from exc

    def publish(self, version: int) -> int:
        """Raise the published version to `version` (never lowers it); returns the result."""
        return int(self._evalsha(self._publish_sha, PUBLISH_SCRIPT, [self.version_key], [version]))

    def floor(self) -> None:
        if self.wire is None:
            self._evalsha(self._floor_sha, FLOOR_SCRIPT, [], [])
        else:
            self._wire_evalsha(self.wire, self._floor_sha_bytes, FLOOR_SCRIPT, (b"0",))

    def subscribe(self, on_change) -> threading.Thread:
        """Call `on_change()` whenever a new version is published (and after a reconnect,
        when messages may have been missed). The push path that makes a change reach every
        process at once; the periodic check stays as the safety net."""

        import redis

        # Its own connection, without the read timeout: it waits for messages.
        listener = redis.Redis.from_url(
            self.url, socket_timeout=None, socket_connect_timeout=1, health_check_interval=30
        )

        def listen():
            while True:
                try:
                    pubsub = listener.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.version_key)
                    on_change()
                    for message in pubsub.listen():
                        if message and message.get("type") == "message":
                            on_change()
                except Exception:  # Redis gone: retry; decisions fail closed meanwhile
                    time.sleep(1)

        thread = threading.Thread(target=listen, name="policy-version-listener", daemon=True)
        thread.start()
        return thread


class LocalSessionStore:
    """In-process session state for the embedded default's single web process."""

    shared = False
    _PRUNE_EVERY = 10_000

    def __init__(self):
        self._sessions: dict[tuple[str, str], tuple[SessionState, float]] = {}
        self._lock = threading.Lock()
        self._checks = 0

    def check(self, items: list[tuple[SessionPlan, float]], version: int) -> list[CheckResult]:
        results = []
        with self._lock:
            for plan, now in items:
                key = (plan.workload, plan.session)
                held = self._sessions.get(key)
                state = held[0] if held and held[1] > now else None
                code, detail, after = session_verdict(state, plan, now)
                if code == "allowed":
                    self._sessions[key] = (after, now + state_ttl(plan, now))
                results.append((code, detail, after.started_at, after.calls))
            self._checks += 1
            if self._checks % self._PRUNE_EVERY == 0:
                self._prune(time.time())
        return results

    def _prune(self, now: float) -> None:
        for key in [k for k, (_s, expires) in self._sessions.items() if expires <= now]:
            del self._sessions[key]

    def published_version(self, *, authoritative: bool = False) -> int:
        return _policy_version_from_db()

    def publish(self, version: int) -> int:
        return version

    def floor(self) -> None:
        with self._lock:
            pass
