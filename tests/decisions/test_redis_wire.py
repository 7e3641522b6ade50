"""The hot path's lean EVALSHA: same bytes as redis-py, and every failure ends closed."""

import hashlib
import os
import socket
import threading
import time
import uuid

import pytest
import redis

from governance.decisions.redis_wire import (
    ScriptMissing,
    ScriptWire,
    WireError,
    pack,
    wire_for_url,
)
from governance.decisions.state import RedisSessionStore, StateUnavailable
from tests.decisions.conftest import TEST_REDIS_URL, redis_reachable
from tests.decisions.test_state import plan


@pytest.fixture
def live_redis():
    if not redis_reachable():
        pytest.skip("no Redis reachable")
    return redis.Redis.from_url(TEST_REDIS_URL)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def test_it_packs_a_command_as_redis_py_does():
    args = (b"EVALSHA", b"abc", b"2", b"k1", "caf\u00e9|\u2603".encode(), b"", b"1.250")
    packer = redis.connection.PythonRespSerializer(65536, lambda value: value)
    assert pack(*args) == b"".join(packer.pack(*args))


def test_evalsha_sends_one_packed_command():
    wire = ScriptWire(host="127.0.0.1")
    sent = []
    wire.request = sent.append
    wire.evalsha(b"f" * 40, (b"1", b"k"))
    assert sent == [pack(b"EVALSHA", b"f" * 40, b"1", b"k")]
    assert sent[0] == b"*4\r\n$7\r\nEVALSHA\r\n$40\r\n" + b"f" * 40 + b"\r\n$1\r\n1\r\n$1\r\nk\r\n"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/3", ("127.0.0.1", 6380, "", 3, "", "")),
        ("redis://localhost", ("localhost", 6379, "", 0, "", "")),
        ("redis://:p%40ss@cache:7000/2", ("cache", 7000, "", 2, "", "p@ss")),
        ("redis://svc:pw@cache/0", ("cache", 6379, "", 0, "svc", "pw")),
        ("unix:///run/redis.sock?db=4", ("", 6379, "/run/redis.sock", 4, "", "")),
    ],
)
def test_it_reads_its_connection_from_the_url(url, expected):
    wire = wire_for_url(url, timeout=0.5)
    assert (wire.host, wire.port, wire.path, wire.db, wire.username, wire.password) == expected


def test_tls_is_left_to_redis_py():
    assert wire_for_url("rediss://cache:6380/0", timeout=0.5) is None


def test_it_runs_a_script_and_reports_a_missing_one(live_redis):
    script = f"return {{KEYS[1], ARGV[1], {uuid.uuid4().int % 1000}}}"
    sha = _sha(script)
    wire = wire_for_url(TEST_REDIS_URL, timeout=0.5)
    live_redis.script_flush()
    with pytest.raises(ScriptMissing):
        wire.evalsha(sha.encode(), (b"1", b"key", b"value"))
    live_redis.script_load(script)
    reply = wire.evalsha(sha.encode(), (b"1", b"key", b"value"))
    assert reply == live_redis.evalsha(sha, 1, "key", "value")
    assert reply[:2] == [b"key", b"value"]


def test_it_selects_the_database_of_the_url(live_redis):
    key = f"mandate-test:wire:{uuid.uuid4().hex}"
    wire = wire_for_url(TEST_REDIS_URL, timeout=0.5)
    wire.request(pack(b"SET", key.encode(), b"here", b"EX", b"60"))
    try:
        assert live_redis.get(key) == b"here"  # the same database as redis-py's
    finally:
        live_redis.delete(key)


def test_it_authenticates_with_the_url_credentials(live_redis):
    user, password = f"mandate-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    live_redis.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], commands=["+ping", "+select"]
    )
    try:
        url = TEST_REDIS_URL.replace("redis://", f"redis://{user}:{password}@", 1)
        assert wire_for_url(url, timeout=0.5).request(pack(b"PING")) == b"PONG"
        wrong = wire_for_url(
            TEST_REDIS_URL.replace("redis://", f"redis://{user}:no@", 1), timeout=0.5
        )
        for _attempt in (1, 2):  # each call tries afresh, none runs unauthenticated
            with pytest.raises(WireError):
                wrong.request(pack(b"PING"))
            assert getattr(wrong._local, "conn", None) is None
    finally:
        live_redis.acl_deluser(user)


def test_it_reconnects_after_the_server_drops_the_connection(live_redis):
    wire = wire_for_url(TEST_REDIS_URL, timeout=0.5)
    name = f"mandate-wire-{uuid.uuid4().hex[:8]}"
    assert wire.request(pack(b"CLIENT", b"SETNAME", name.encode())) == b"OK"
    live_redis.client_kill_filter(_id=_client_id(live_redis, name))
    with pytest.raises(WireError):
        wire.request(pack(b"PING"))
    assert wire.request(pack(b"PING")) == b"PONG"


def test_an_interrupted_call_never_leaves_its_reply_to_the_next(live_redis):
    wire = wire_for_url(TEST_REDIS_URL, timeout=0.5)
    wire.request(pack(b"PING"))
    sock, reader = wire._local.conn

    class Interrupted(BaseException):  # as a signal handler's exception would be
        pass

    class InterruptedAfterSending:
        def sendall(self, data):
            sock.sendall(data)

        def recv(self, size):
            raise Interrupted

        def close(self):
            sock.close()

    wire._local.conn = (InterruptedAfterSending(), reader)
    with pytest.raises(Interrupted):
        wire.request(pack(b"ECHO", b"meant-for-the-first-call"))
    assert wire.request(pack(b"ECHO", b"second")) == b"second"


def _client_id(client, name: str) -> int:
    return next(int(c["id"]) for c in client.client_list() if c.get("name") == name)


def test_it_gives_up_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wire = ScriptWire(host="127.0.0.1", port=port, timeout=0.2)
    with pytest.raises(WireError):
        wire.request(pack(b"PING"))


def test_a_server_that_never_answers_times_out():
    """The kernel keeps the timeout (SO_RCVTIMEO): the call neither hangs nor polls."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    wire = ScriptWire(host="127.0.0.1", port=server.getsockname()[1], timeout=0.2)
    started = time.monotonic()
    with pytest.raises(WireError):
        wire.request(pack(b"PING"))
    assert 0.15 < time.monotonic() - started < 2
    server.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_does_not_share_the_parents_connection(live_redis):
    wire = wire_for_url(TEST_REDIS_URL, timeout=0.5)
    wire.request(pack(b"PING"))
    pid = os.fork()
    if pid == 0:  # the child: no connection inherited, a new one works
        ok = getattr(wire._local, "conn", None) is None and wire.request(pack(b"PING")) == b"PONG"
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wire.request(pack(b"PING")) == b"PONG"  # the parent's is untouched


def test_the_store_fails_closed_when_the_wire_breaks(live_redis):
    store = RedisSessionStore(TEST_REDIS_URL, prefix=f"mandate-test:{uuid.uuid4().hex}:")
    store.publish(1)
    store.wire.port = 1  # the next connection goes nowhere
    store.wire.close()
    with pytest.raises(StateUnavailable):
        store.check([(plan("s", "web"), time.time())], 1)


def test_the_store_loads_its_script_when_redis_lost_it(live_redis):
    store = RedisSessionStore(TEST_REDIS_URL, prefix=f"mandate-test:{uuid.uuid4().hex}:")
    store.publish(1)
    live_redis.script_flush()
    [(code, _detail, _started, calls)] = store.check([(plan("s", "web"), time.time())], 1)
    assert (code, calls) == ("allowed", 1)
    live_redis.script_flush()
    store.floor()


def test_without_the_wire_redis_py_gives_the_same_answers(live_redis):
    """A rediss:// URL has no wire: the same checks go through redis-py."""
    prefix = f"mandate-test:{uuid.uuid4().hex}:"
    wired, plain = (RedisSessionStore(TEST_REDIS_URL, prefix=prefix) for _ in range(2))
    plain.wire = None
    wired.publish(1)
    now = time.time()
    answers = [
        store.check([(plan("s", tool, calls=3), now)], 1)[0][::3]
        for store, tool in [
            (wired, "web"),
            (plain, "read"),
            (plain, "exec"),
            (wired, "web"),
            (plain, "read"),
        ]
    ]
    assert answers == [
        ("allowed", 1),
        ("allowed", 2),
        ("combination_needs_exception", 2),
        ("allowed", 3),
        ("tool_call_budget_exhausted", 3),
    ]
    plain.floor()
