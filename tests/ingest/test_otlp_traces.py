"""Spans that arrive before the span naming their session end up in that session."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Max, Min
from django.test.utils import CaptureQueriesContext

from governance.evaluation.services import events_evaluate
from governance.ingest.traces import _findings_move
from governance.models import Finding
from tests.evaluation.rows import make_session
from tests.findings.api_rows import make_finding
from tests.ingest.otlp_builders import TRACE, agent_trace, span
from tests.ingest.test_otlp_api import assert_agent_trace_stored
from workloads.models import PendingEvaluation, Session, SessionTrace, UsageEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_history():
    cache.clear()


def evaluate_all():
    span = UsageEvent.objects.aggregate(low=Min("id"), high=Max("id"))
    events_evaluate(min_id=span["low"], max_id=span["high"])


def tool_span(span_id: str, tool: str, offset_ms: int):
    return span(
        span_id,
        f"execute_tool {tool}",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
        parent_span_id="00000000000000a1",
        offset_ms=offset_ms,
    )


def test_children_exported_before_their_root_are_folded_into_its_session(export_spans, workload):
    root, *children = agent_trace()
    export_spans(children)  # the root ends last, so it is exported last
    assert Session.objects.get(external_id=TRACE).source == "otlp"
    export_spans([root])
    assert not Session.objects.filter(external_id=TRACE).exists()
    assert_agent_trace_stored(workload)
    session = Session.objects.get(external_id="conv-1")
    assert (
        session.started_at
        == UsageEvent.objects.filter(session=session).aggregate(first=Min("occurred_at"))["first"]
    )
    link = SessionTrace.objects.get(workload=workload, trace_id=TRACE)
    assert link.session == session


def test_spans_after_the_root_find_the_linked_session(export_spans, workload):
    export_spans([agent_trace()[0]])
    export_spans([tool_span("00000000000000b7", "ticket-read", 3000)])
    assert UsageEvent.objects.get(event_id=f"{TRACE}:00000000000000b7").session.external_id == (
        "conv-1"
    )
    assert not Session.objects.filter(external_id=TRACE).exists()


def test_a_combination_split_across_the_fold_is_found_and_no_finding_is_raised_twice(
    export_spans, workload
):
    export_spans([tool_span("00000000000000c1", "web-search", 100)])
    export_spans([tool_span("00000000000000c2", "file-read", 200)])
    evaluate_all()  # the trace-keyed half alone: two ungranted tools, no combination
    orphan = Session.objects.get(external_id=TRACE)
    assert sorted(Finding.objects.values_list("kind", flat=True)) == ["unentitled_tool"] * 2

    root = agent_trace()[0]
    export_spans([root, tool_span("00000000000000c3", "code-exec", 300)])
    session = Session.objects.get(external_id="conv-1")
    assert session.evaluation_state == {}
    events = UsageEvent.objects.filter(session=session)
    assert PendingEvaluation.objects.filter(event__in=events).count() == events.count() > 1
    moved = Finding.objects.filter(session=session)
    assert moved.count() == 2
    assert all(f.dedupe_key.startswith(f"s{session.pk}:") for f in moved)
    assert not Session.objects.filter(pk=orphan.pk).exists()

    evaluate_all()
    kinds = sorted(Finding.objects.filter(session=session).values_list("kind", flat=True))
    assert kinds == ["forbidden_combination", *["unentitled_tool"] * 3]


def test_a_fold_that_failed_is_done_by_the_beat_task(export_spans, workload, monkeypatch):
    from governance.ingest import traces
    from governance.ingest.tasks import fold_traces
    from governance.schedule import BEAT_SCHEDULE

    root, *children = agent_trace()
    export_spans(children)

    def crash(*args):
        raise RuntimeError("worker killed mid-fold")

    monkeypatch.setattr(traces, "_fold", crash)
    with pytest.raises(RuntimeError):
        export_spans([root])
    monkeypatch.undo()
    link = SessionTrace.objects.get(trace_id=TRACE)
    assert link.fold_pending and Session.objects.filter(external_id=TRACE).exists()

    assert fold_traces.apply().get() == 1
    assert not Session.objects.filter(external_id=TRACE).exists()
    assert_agent_trace_stored(workload)
    link.refresh_from_db()
    assert not link.fold_pending
    assert fold_traces.apply().get() == 0  # nothing left
    assert any(entry["task"] == "mandate.fold_traces" for entry in BEAT_SCHEDULE.values())


def test_spans_stored_under_the_trace_after_its_link_are_folded_by_the_beat_task(
    export_spans, workload, monkeypatch
):
    """A batch of early spans read the trace's links before the root's batch committed its
    link, and committed after it: the link found nothing to fold, so it is settled, and the
    spans sit under the trace id. The sweeper looks at recent links again."""
    from governance.ingest import otlp
    from governance.ingest.tasks import fold_traces

    root, *children = agent_trace()
    export_spans([root])
    assert SessionTrace.objects.get(trace_id=TRACE).fold_pending is False
    monkeypatch.setattr(otlp, "trace_sessions_known", lambda traces: {})  # read too early
    export_spans(children)
    monkeypatch.undo()
    assert Session.objects.filter(external_id=TRACE).exists()

    assert fold_traces.apply().get() == 1
    assert not Session.objects.filter(external_id=TRACE).exists()
    assert_agent_trace_stored(workload)
    assert fold_traces.apply().get() == 0


def test_a_trace_linked_without_anything_to_fold_is_not_pending(export_spans, workload):
    export_spans(agent_trace())
    assert SessionTrace.objects.get(trace_id=TRACE).fold_pending is False


def test_linking_takes_the_same_queries_for_two_traces_as_for_six(
    workload, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from governance.ingest.traces import traces_link

    def links(numbers):
        for i in numbers:
            Session.objects.create(workload=workload, external_id=f"conv-{i}", source="otlp")
        return {(workload.pk, f"{i:032x}", f"conv-{i}") for i in numbers}

    two, six = links(range(2)), links(range(10, 16))
    with CaptureQueriesContext(connection) as counted:
        traces_link(two)
    with django_assert_max_num_queries(len(counted.captured_queries)):
        traces_link(six)
    assert SessionTrace.objects.count() == 8


SECOND_TRACE = "6c9f0008a9149214e37ac744924ad71d"


def test_a_signal_fired_in_both_halves_is_merged_into_one_finding(
    export_spans, workload, admin_user
):
    from governance.audit import AuditEvent
    from governance.models import ContainmentAction, FindingComment

    # Turn one of conversation conv-1: its root names the session, web-search is not granted.
    export_spans([agent_trace()[0], tool_span("00000000000000c1", "web-search", 100)])
    evaluate_all()
    session = Session.objects.get(external_id="conv-1")
    first = Finding.objects.get(session=session, kind="unentitled_tool", tool="web-search")

    # Turn two: its children arrive before its root, in a session keyed by the trace.
    second_turn = [
        span(
            "00000000000000d1",
            "execute_tool web-search",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web-search"},
            trace_id=SECOND_TRACE,
            parent_span_id="00000000000000a1",
            offset_ms=9000,
        )
    ]
    export_spans(second_turn)
    evaluate_all()
    orphan_finding = Finding.objects.get(session__external_id=SECOND_TRACE)
    orphan_finding.assignee = admin_user
    orphan_finding.save()
    FindingComment.objects.create(finding=orphan_finding, author=admin_user, body="seen it")
    suspended = ContainmentAction.objects.create(
        finding=orphan_finding, action="suspend_workload", workload=workload
    )
    ContainmentAction.objects.create(finding=first, action="revoke_grant", workload=workload)

    untouched_since = first.updated_at
    root = agent_trace()[0]
    root["trace_id"], root["start"], root["end"] = (
        SECOND_TRACE,
        root["start"] + 8_000_000_000,
        root["end"] + 8_000_000_000,
    )
    export_spans([root])

    findings = Finding.objects.filter(session=session, kind="unentitled_tool", tool="web-search")
    assert list(findings) == [first]  # one finding, not two
    first.refresh_from_db()
    both_turns = UsageEvent.objects.filter(
        event_id__in=[f"{TRACE}:00000000000000c1", f"{SECOND_TRACE}:00000000000000d1"]
    )
    assert sorted(first.evidence) == sorted(both_turns.values_list("id", flat=True))
    assert first.assignee == admin_user  # the empty assignee is filled
    assert first.updated_at > untouched_since
    assert list(first.comments.values_list("body", flat=True)) == ["seen it"]
    assert sorted(first.containment.values_list("action", flat=True)) == [
        "revoke_grant",
        "suspend_workload",
    ]
    assert first.containment.filter(pk=suspended.pk).exists()
    merged = AuditEvent.objects.get(action="finding.merged")
    assert merged.object_id == str(first.pk)
    assert merged.before["merged_finding"]["id"] == orphan_finding.pk

    evaluate_all()  # evaluating the merged session again raises nothing twice
    assert findings.count() == 1


def test_moving_findings_in_a_fold_costs_the_same_queries_for_one_or_many(workload):
    def queries_to_move(count: int) -> int:
        orphan, target = make_session(workload), make_session(workload)
        for _ in range(count):
            make_finding(workload, session=orphan)
        with CaptureQueriesContext(connection) as queries:
            _findings_move(orphan.pk, target.pk)
        assert Finding.objects.filter(session=target).count() == count
        return len(queries)

    assert queries_to_move(3) == queries_to_move(1)


def test_links_made_long_ago_are_not_looked_at_again(export_spans, workload, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from governance.ingest import otlp
    from governance.ingest.traces import traces_stranded

    root, *children = agent_trace()
    export_spans([root])
    monkeypatch.setattr(otlp, "trace_sessions_known", lambda traces: {})
    export_spans(children)
    assert len(traces_stranded()) == 1
    SessionTrace.objects.update(created_at=timezone.now() - timedelta(days=1))
    assert traces_stranded() == []
