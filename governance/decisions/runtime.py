"""This process's decision machinery, built once from settings: state store, snapshot, log."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from governance.decisions import process
from governance.decisions.log import DecisionLog
from governance.decisions.snapshot import SnapshotHolder
from governance.decisions.state import LocalSessionStore, RedisSessionStore


@dataclass
class Runtime:
    store: RedisSessionStore | LocalSessionStore
    holder: SnapshotHolder
    log: DecisionLog
    # The process whose listener is running (threads do not survive a fork, so it starts on
    # the first decision in each worker); the hot path only compares it with process.pid.
    ready_in: int | None = field(default=None)

    def listen(self) -> None:
        """Start this process's version listener (once per process)."""
        if self.ready_in != process.pid:
            self.ready_in = process.pid
            if settings.DECISIONS_VERSION_LISTENER and hasattr(self.store, "subscribe"):
                self.store.subscribe(self.holder.check_soon)


_runtime: Runtime | None = None


def _build() -> Runtime:
    url = getattr(settings, "DECISIONS_REDIS_URL", "") or settings.REDIS_URL
    store: RedisSessionStore | LocalSessionStore
    if url:
        store = RedisSessionStore(url, prefix=settings.DECISIONS_REDIS_PREFIX)
    else:
        store = LocalSessionStore()
    holder = SnapshotHolder(
        version_source=store.published_version,
        publish=store.publish,
        check_interval=settings.DECISIONS_VERSION_CHECK_MS / 1000,
    )
    log = DecisionLog(
        enabled=settings.DECISIONS_LOG_ENABLED,
        background=settings.DECISIONS_LOG_BACKGROUND,
        interval=settings.DECISIONS_LOG_FLUSH_MS / 1000,
        batch=settings.DECISIONS_LOG_BATCH,
        max_buffer=settings.DECISIONS_LOG_MAX_BUFFER,
    )
    return Runtime(store=store, holder=holder, log=log)


def runtime() -> Runtime:
    global _runtime
    rt = _runtime
    if rt is not None and rt.ready_in == process.pid:
        return rt
    if rt is None:
        rt = _runtime = _build()
    rt.listen()
    return rt


def runtime_reset() -> None:
    """Forget this process's machinery (tests, settings changes)."""
    global _runtime
    _runtime = None


def snapshot_mark_dirty() -> None:
    """A change in this process: re-read the version from the database on the next decision."""
    if _runtime is not None:
        _runtime.holder.mark_dirty()


def policy_version_announce() -> None:
    """After commit: publish the database's version so every process sees it."""
    if _runtime is None:
        return
    _runtime.holder.mark_dirty()
    try:
        from governance.policy_version import policy_version_current

        _runtime.store.publish(policy_version_current())
    except Exception:  # the periodic check and the beat task catch up; never break a commit
        import logging

        logging.getLogger(__name__).warning("could not publish the policy version", exc_info=True)
