"""Writing and verifying the hash-chained audit trail.

Every service that changes state calls `audit_record` inside its transaction. The chain is
serialised with a transaction-scoped advisory lock on PostgreSQL; SQLite serialises writers
itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.utils import timezone

from governance.models import AuditEvent, ServiceToken
from governance.request_id import current_request_id

GENESIS_HASH = "0" * 64
_CHAIN_LOCK_KEY = 0x4D414E44  # "MAND"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def audit_snapshot(obj: models.Model, fields: list[str] | tuple[str, ...]) -> dict:
    """The named fields of a model instance as JSON-safe values (foreign keys as ids)."""
    data = {}
    for name in fields:
        field = obj._meta.get_field(name)
        # A reverse relation has no column: audit_snapshot names concrete fields only.
        data[name] = _jsonable(getattr(obj, getattr(field, "attname", name)))
    return data


@dataclass(frozen=True)
class Actor:
    user: Any  # an instance of AUTH_USER_MODEL, or None for the system
    label: str


def actor_of(by: AbstractBaseUser | ServiceToken | None) -> Actor:
    if by is None:
        return Actor(None, "system")
    if isinstance(by, ServiceToken):
        return Actor(by.acts_for, f"token:{by.name}")
    return Actor(by, by.get_username())


def _event_digest(prev_hash: str, event: AuditEvent) -> str:
    payload = {
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "before": event.before,
        "after": event.after,
        "request_id": event.request_id,
        "created_at": event.created_at.isoformat(),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def audit_record(
    *,
    by: AbstractBaseUser | ServiceToken | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one audit event; must run inside the transaction that made the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    actor = actor_of(by)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)
    _lock_chain()
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    event = AuditEvent(
        actor=actor.user if getattr(actor.user, "pk", None) else None,
        actor_label=actor.label[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:64],
        object_repr=str(object_repr)[:200],
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        request_id=current_request_id.get(),
        created_at=timezone.now(),
    )
    event.prev_hash = last or GENESIS_HASH
    event.hash = _event_digest(event.prev_hash, event)
    event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def audit_head() -> str:
    """The newest event's hash (the genesis hash for an empty trail). Kept somewhere else,
    it lets a later `audit_verify(expect_head=...)` notice events removed from the end, which
    the chain alone cannot show."""
    return AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS_HASH


def audit_verify(*, batch_size: int = 5000, expect_head: str | None = None) -> ChainBreak | None:
    """Walk the chain in id order; return the first event whose link or digest is wrong, or,
    given a head recorded earlier, a break when that head is no longer in the chain."""
    prev_hash = GENESIS_HASH
    last_id = 0
    seen_head = expect_head is None or expect_head == GENESIS_HASH
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            if not seen_head:
                return ChainBreak(last_id, "the expected head is not in the chain: events removed")
            return None
        for event in batch:
            seen_head = seen_head or event.hash == expect_head
            if event.prev_hash != prev_hash:
                return ChainBreak(event.id, "prev_hash does not match the previous event")
            if _event_digest(prev_hash, event) != event.hash:
                return ChainBreak(event.id, "content does not match its hash")
            prev_hash = event.hash
            last_id = event.id
