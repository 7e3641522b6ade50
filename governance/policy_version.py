"""Bumping and reading the policy version that decision snapshots are keyed on."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from governance.models import PolicyState


def policy_version_bump() -> None:
    """Call inside the transaction of any change to workloads, grants, rules or policies."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("policy_version_bump must run inside the change's transaction")
    updated = PolicyState.objects.filter(id=1).update(
        version=F("version") + 1, changed_at=timezone.now()
    )
    if not updated:
        PolicyState.objects.get_or_create(id=1, defaults={"version": 2})
    # Decision snapshots: this process re-checks at once, every process after commit.
    from governance.decisions.runtime import policy_version_announce, snapshot_mark_dirty

    snapshot_mark_dirty()
    transaction.on_commit(policy_version_announce)


def policy_version_current() -> int:
    return PolicyState.objects.filter(id=1).values_list("version", flat=True).first() or 1
