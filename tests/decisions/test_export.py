"""Cedar and JSON exports, and the differential test: cedarpy and Mandate agree on the
static part (workload status, grants and their validity) for random catalogues."""

import json
import math

import cedarpy
import pytest
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.decisions.evaluator import SessionPlan, static_verdict
from governance.decisions.export import cedar_entities, cedar_policies, cedar_request
from governance.decisions.snapshot import snapshot_build
from tests.decisions.conftest import tool
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory

WORKLOADS = ["w-a", "w-b", "w-c"]
TOOLS = ["t.1", "t_2", "t-3"]
STATUSES = ["draft", "active", "suspended", "retired"]
# Session ids a service may send, including what a Cedar string literal must escape.
SESSIONS = ["run-1", 'say "hi"', "back\\slash", "line\nbreak", "tab\tand\u00e9\U0001f600"]


# Times in quarter seconds: fractional like the database's, and exact in binary.
def moments(low, high):
    return st.integers(low * 4, high * 4).map(lambda quarters: quarters / 4)


@st.composite
def catalogues(draw):
    workloads = [
        {
            "slug": slug,
            "status": draw(st.sampled_from(STATUSES)),
            "classified": draw(st.booleans()),
            "sessions_need_approval": draw(st.booleans()),
            "sessions_required": draw(st.booleans()),
        }
        for slug in draw(st.lists(st.sampled_from(WORKLOADS), unique=True))
    ]
    tools = [
        {"slug": slug, "capability": "web_access"}
        for slug in draw(st.lists(st.sampled_from(TOOLS), unique=True))
    ]
    grants = []
    pairs = draw(
        st.lists(st.tuples(st.sampled_from(WORKLOADS), st.sampled_from(TOOLS)), unique=True)
    )
    for workload, tool_slug in pairs:
        start = draw(moments(0, 100))
        end = draw(st.one_of(st.none(), moments(int(start) + 1, 200)))
        grants.append(
            {"workload": workload, "tool": tool_slug, "valid_from": start, "valid_until": end}
        )
    session_approvals = []
    for workload, session in draw(
        st.lists(st.tuples(st.sampled_from(WORKLOADS), st.sampled_from(SESSIONS)), unique=True)
    ):
        start = draw(moments(0, 100))
        session_approvals.append(
            {
                "workload": workload,
                "session": session,
                "valid_from": start,
                "valid_until": draw(moments(int(start) + 1, 200)),
            }
        )
    return {
        "workloads": workloads,
        "tools": tools,
        "grants": grants,
        "session_approvals": session_approvals,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalogue=catalogues(),
    workload=st.sampled_from([*WORKLOADS, "unknown"]),
    tool_slug=st.sampled_from([*TOOLS, "unknown"]),
    now=moments(-5, 210),
    session=st.one_of(st.none(), st.sampled_from([*SESSIONS, "unapproved"])),
)
def test_cedar_and_mandate_agree_on_the_static_part(catalogue, workload, tool_slug, now, session):
    grants = [
        {**g, "valid_until": math.inf if g["valid_until"] is None else g["valid_until"]}
        for g in catalogue["grants"]
    ]
    snapshot = snapshot_build(version=1, rules=[], **{**catalogue, "grants": grants})
    mandate = static_verdict(snapshot, None, workload, tool_slug, session, now)
    cedar = cedarpy.is_authorized(
        cedar_request(workload, tool_slug, now, session),
        cedar_policies(snapshot),
        cedar_entities(snapshot),
    )
    assert not cedar.diagnostics.errors
    # A session check that passes the static part goes on to the session state: a plan.
    static_allow = isinstance(mandate, SessionPlan) or mandate.decision == "allow"
    assert static_allow == cedar.allowed


@pytest.mark.django_db
def test_export_policy_writes_cedar_and_json(tmp_path, capsys):
    workload = ClassifiedWorkloadFactory(slug="triage")
    EntitlementFactory(workload=workload, tool=tool("web-search"))
    call_command("export_policy", format="cedar", output=str(tmp_path / "p"))
    policies = (tmp_path / "p.cedar").read_text()
    entities = json.loads((tmp_path / "p.entities.json").read_text())
    assert 'resource == Tool::"web-search"' in policies
    assert {"type": "Workload", "id": "triage"} in [e["uid"] for e in entities]
    request = cedar_request("triage", "web-search", 4_000_000_000)
    assert cedarpy.is_authorized(request, policies, entities).allowed
    call_command("export_policy", format="json")
    exported = json.loads(capsys.readouterr().out)
    assert exported["format"] == "mandate.snapshot/1"
    assert exported["workloads"]["triage"]["grants"]["web-search"]["valid_until"] is None
    assert exported["dynamic_rules"][0]["slug"] == "lethal-trifecta"
    assert "tokens" not in exported


def test_cedar_lets_through_only_the_approved_sessions_of_a_gated_workload():
    snapshot = snapshot_build(
        version=1,
        rules=[],
        workloads=[
            {"slug": "w-a", "status": "active", "classified": True, "sessions_need_approval": True}
        ],
        tools=[{"slug": "t.1", "capability": "web_access"}],
        grants=[{"workload": "w-a", "tool": "t.1", "valid_from": 0, "valid_until": math.inf}],
        session_approvals=[
            {"workload": "w-a", "session": 'say "hi"\n', "valid_from": 10, "valid_until": 20}
        ],
    )
    policies, entities = cedar_policies(snapshot), cedar_entities(snapshot)

    def cedar_allows(session, now):
        answer = cedarpy.is_authorized(
            cedar_request("w-a", "t.1", now, session), policies, entities
        )
        assert not answer.diagnostics.errors
        return answer.allowed

    assert cedar_allows('say "hi"\n', 15)
    assert not cedar_allows('say "hi"\n', 20)  # the approval's end
    assert not cedar_allows("say", 15)
    assert not cedar_allows(None, 15)
    for session, now in [('say "hi"\n', 15), ('say "hi"\n', 20), ("say", 15), (None, 15)]:
        verdict = static_verdict(snapshot, None, "w-a", "t.1", session, float(now))
        assert isinstance(verdict, SessionPlan) == cedar_allows(session, now)
