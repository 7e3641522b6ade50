"""Hand-built sessions as database rows (the ingest API is another concern's)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta

from django.utils import timezone

from workloads.models import Session, UsageEvent

_n = itertools.count(1)


def make_session(workload, *, request="Summarise ticket 4411 for the agent", started_at=None):
    started_at = started_at or timezone.now() - timedelta(minutes=5)
    return Session.objects.create(
        workload=workload,
        external_id=f"run-{next(_n)}",
        original_request=request,
        started_at=started_at,
        last_event_at=started_at,
    )


def add_events(session, *specs) -> list[UsageEvent]:
    """Each spec is (type, seconds after the session started, {fields}) or (type, seconds)."""
    rows = []
    for spec in specs:
        kind, offset, fields = (*spec, {})[:3]
        fields = dict(fields)
        if "arguments" in fields:
            fields["arguments_hash"] = hashlib.sha256(fields.pop("arguments").encode()).hexdigest()
        rows.append(
            UsageEvent(
                workload_id=session.workload_id,
                session=session,
                event_id=f"e-{next(_n)}",
                type=kind,
                occurred_at=session.started_at + timedelta(seconds=offset),
                **fields,
            )
        )
    events = UsageEvent.objects.bulk_create(rows)
    last = max(e.occurred_at for e in events)
    Session.objects.filter(pk=session.pk).update(last_event_at=last)
    ids = sorted(UsageEvent.objects.filter(session=session).values_list("id", flat=True))
    return list(UsageEvent.objects.filter(id__in=ids[-len(rows) :]).order_by("id"))


def id_range(events) -> dict:
    return {"min_id": min(e.id for e in events), "max_id": max(e.id for e in events)}
