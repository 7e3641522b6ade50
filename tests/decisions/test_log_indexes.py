"""Every console filter on the decision log reaches an index, partial ones included."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from governance.decisions.selectors import decision_list, decisions_for_session

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.django_db,
]


def plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # the test table is tiny
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture(autouse=True)
def log_like_production():
    """A log whose statistics look like a real one: many workloads, tools and sessions, few
    denials. On a table the planner believes empty or tiny its choice depends on whatever
    statistics earlier tests left behind (the session filter once planned through the
    recency index after a long run), which is not what this test is about."""
    from datetime import timedelta

    from django.utils import timezone

    from governance.models import Decision

    now = timezone.now()
    Decision.objects.bulk_create(
        Decision(
            decided_at=now - timedelta(seconds=i),
            # The filters below ask for "w", "t" and "s-1": values the log holds, in the
            # proportions a busy log would.
            workload="w" if i % 40 == 1 else f"w{i % 40}",
            tool="t" if i % 25 == 1 else f"t{i % 25}",
            session=f"s-{i % 400}",
            decision="deny" if i % 20 == 0 else "allow",
            reason_code="tool_not_granted" if i % 20 == 0 else "allowed",
            policy_version=1,
            latency_us=100,
        )
        for i in range(4000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE governance_decision")


@pytest.fixture
def reader():
    return get_user_model().objects.create_superuser("reader", "reader@example.test", "x")


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "decision_recent"),
        ({"workload": "w"}, "decision_by_workload"),
        ({"tool": "t"}, "decision_by_tool"),
        ({"decision": "deny"}, "decision_denied"),
        ({"workload": "w", "session": "s-1"}, "decision_by_session"),
        ({"session": "s-1"}, "decision_by_session"),
    ],
)
def test_each_filter_uses_its_index(reader, filters, index):
    assert index in plan(decision_list(user=reader, filters=filters)[:51])


def test_the_session_timeline_uses_the_partial_session_index(reader):
    queryset = decisions_for_session(user=reader, workload="w", session_external_id="s-1")
    assert "decision_by_session" in plan(queryset)


def test_an_older_page_starts_inside_the_index_not_after_reading_the_newer_rows(reader):
    from governance.keyset import past_cursor
    from governance.models import Decision

    queryset = decision_list(user=reader, filters={})
    older = past_cursor(Decision.objects.all(), ("decided_at", "id"), "17-5", "lt")
    deeper = queryset.filter(older)
    explained = plan(deeper[:51])
    assert "decision_recent" in explained
    # The cursor bounds the scan (Index Cond), rather than filtering every newer row out.
    assert "Index Cond: (ROW(decided_at, id) < ROW(" in explained
