"""Counters and charts read only what they show (bench/pages.py): the queue's counters count
unresolved findings, the dashboard's per-day charts read the last days by an index range."""

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from governance.findings import selectors
from governance.models import Finding
from tests.evaluation.rows import make_session
from tests.factories import ClassifiedWorkloadFactory

pytestmark = pytest.mark.django_db


def _finding(workload, n, status):
    return Finding.objects.create(
        kind="unentitled_tool",
        severity="high" if n % 2 else "low",
        status=status,
        workload=workload,
        summary=f"finding {n}",
        dedupe_key=f"count-test-{n}",
        occurred_at=timezone.now(),
    )


def test_the_queue_counters_count_unresolved_findings_by_status(reviewer):
    workload = ClassifiedWorkloadFactory()
    for n, status in enumerate(["open", "open", "acknowledged", "resolved", "false_positive"]):
        _finding(workload, n, status)
    counts = selectors.finding_counts(user=reviewer)
    assert counts["by_status"] == {"open": 2, "acknowledged": 1}
    assert counts["open_by_severity"] == {"low": 1, "high": 1}


def test_the_dashboard_series_starts_at_midnight_of_its_first_day(reviewer):
    workload = ClassifiedWorkloadFactory()
    first_day = timezone.localdate() - timedelta(days=13)
    midnight = timezone.make_aware(datetime.combine(first_day, time.min))
    make_session(workload, started_at=midnight - timedelta(minutes=1))
    make_session(workload, started_at=midnight + timedelta(minutes=1))
    make_session(workload, started_at=timezone.now() - timedelta(minutes=1))
    series = selectors.dashboard_series(user=reviewer)["sessions"]
    assert len(series) == 14
    assert series[0] == {"day": first_day, "n": 1}
    assert sum(point["n"] for point in series) == 2
