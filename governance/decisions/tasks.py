"""Celery tasks of the decision concern. Thin: one call each."""

from celery import shared_task

from governance.decisions.state import StateUnavailable


@shared_task(ignore_result=True, autoretry_for=(StateUnavailable,), max_retries=2)
def decisions_publish_policy_version() -> None:
    """Safety net: publish the database's policy version to Redis.

    Commits publish it themselves (on_commit); this repairs a publish lost to a crash between
    commit and publish, or a Redis that was flushed. Processes notice within their check
    interval. A no-op on the embedded default (no shared state).
    """
    from governance.decisions.runtime import runtime

    store = runtime().store
    if store.shared:
        store.published_version(authoritative=True)
