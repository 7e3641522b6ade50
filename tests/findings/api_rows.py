"""Findings as rows, for the API tests (the evaluator's own tests raise them for real)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.utils import timezone

from governance.models import Finding
from governance.models.findings import SEVERITY_RANK

_n = itertools.count(1)


def make_finding(workload, *, session=None, age_minutes: int = 0, **fields) -> Finding:
    severity = fields.pop("severity", "high")
    at = timezone.now() - timedelta(minutes=age_minutes)
    values = {
        "kind": "unentitled_tool",
        "status": Finding.Status.OPEN,
        "tool": "send-email",
        "summary": "Called send-email without a grant.",
        "evidence": [],
        "details": {"signal": "no_grant"},
        "occurred_at": at,
        "created_at": at,
    }
    return Finding.objects.create(
        workload=workload,
        session=session,
        severity=severity,
        severity_rank=SEVERITY_RANK[severity],
        dedupe_key=f"api-test-{next(_n)}",
        **(values | fields),
    )
