"""The Redis Lua script and the local fallback give the same answers as the pure evaluator."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.decisions.evaluator import SessionPlan
from governance.decisions.runtime import runtime
from governance.decisions.snapshot import RuleEntry, rule_encode
from governance.decisions.state import LocalSessionStore, RedisSessionStore, StaleVersion
from tests.decisions.conftest import TEST_REDIS_URL, redis_reachable

LABELS = {
    "web": ("web_access", "tool:web"),
    "read": ("file_read", "tool:read"),
    "exec": ("code_execution", "tool:exec"),
    "mail": ("messaging", "tool:mail"),
}
GROUPS = [["file_read"], ["web_access"], ["code_execution", "messaging"]]
RULES = (
    RuleEntry("trifecta", "Trifecta", "exception_required", tuple(map(frozenset, GROUPS)), ""),
    RuleEntry(
        "no-web-mail",
        "No web+mail",
        "forbid",
        (frozenset({"tool:web"}), frozenset({"messaging"})),
        "",
    ),
)
RULES = tuple(
    RuleEntry(r.slug, r.name, r.effect, r.groups, rule_encode(r.slug, r.groups)) for r in RULES
)


def plan(session: str, tool: str, calls: int = 4, seconds: float = 200) -> SessionPlan:
    return SessionPlan(
        workload="w",
        session=session,
        max_session_seconds=seconds,
        idle_timeout_seconds=25,
        max_tool_calls=calls,
        labels=LABELS[tool],
        rules=RULES,
        log_level="metadata",
    )


steps = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(list(LABELS)), st.integers(0, 30)),
    min_size=1,
    max_size=9,  # simulated time stays within the keys' real TTL (window + idle + 60 s)
)


@pytest.mark.skipif(not redis_reachable(), reason="no Redis reachable")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_the_lua_script_and_the_local_fallback_agree(steps):
    import uuid

    redis_store = RedisSessionStore(TEST_REDIS_URL, prefix=f"mandate-test:{uuid.uuid4().hex}:")
    redis_store.publish(1)
    local_store = LocalSessionStore()
    now = 1_000_000.0
    try:
        for session, tool, gap in steps:
            now += gap
            item = [(plan(session, tool), now)]
            expected = local_store.check(item, 1)[0]
            got = redis_store.check(item, 1)[0]
            assert got[:2] == expected[:2]
            assert got[3] == expected[3]
            assert got[2] == pytest.approx(expected[2], abs=0.001)
    finally:
        keys = list(redis_store.client.scan_iter(match=f"{redis_store.prefix}*"))
        redis_store.client.delete(*keys)


def test_the_script_refuses_a_stale_version(redis_state):
    store = runtime().store
    store.publish(5)
    with pytest.raises(StaleVersion) as caught:
        store.check([(plan("a", "web"), 1.0)], 4)
    assert caught.value.published == 5
    assert store.publish(3) == 5  # publishing never lowers the version


def test_a_batch_of_session_checks_is_one_pipeline(redis_state):
    store = runtime().store
    store.publish(1)
    sent = []
    original = store.client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        def counted():
            sent.append(len(pipe.command_stack))
            return execute()

        pipe.execute = counted
        return pipe

    store.client.pipeline = counting_pipeline
    results = store.check([(plan("a", t), 1.0) for t in ("web", "read", "exec")], 1)
    assert sent == [3]
    assert [r[0] for r in results] == ["allowed", "allowed", "combination_needs_exception"]


@pytest.mark.django_db
def test_the_beat_task_publishes_the_database_version(redis_state):
    from governance.decisions.tasks import decisions_publish_policy_version
    from governance.policy_version import policy_version_current

    decisions_publish_policy_version()
    store = runtime().store
    assert int(store.client.get(store.version_key)) == policy_version_current()


@pytest.mark.django_db
def test_a_published_version_reaches_another_process_at_once(redis_state):
    import threading

    from governance.decisions.runtime import _build
    from governance.policy_version import policy_version_bump, policy_version_current

    here = runtime()
    elsewhere = _build()  # another process's machinery: its own snapshot and listener
    elsewhere.holder.check_interval = 3600  # only the push can make it look again
    before = elsewhere.holder.current().version
    heard = threading.Event()

    def on_change():
        elsewhere.holder.check_soon()
        heard.set()

    elsewhere.store.subscribe(on_change)
    assert heard.wait(5)  # subscribed (it also checks once on (re)connect)
    elsewhere.holder.current()
    heard.clear()
    policy_version_bump()
    here.store.publish(policy_version_current())
    assert heard.wait(5)
    assert elsewhere.holder.current().version == before + 1
