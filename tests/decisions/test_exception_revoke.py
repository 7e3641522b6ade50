"""A revoked rule exception stops covering its rule at once, for the decision endpoint too."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.approvals.services import rule_exception_revoke, session_extension_revoke
from tests.decisions.conftest import ask, commit_changes
from workloads.models import CombinationRule, RuleException, SessionExtension

pytestmark = pytest.mark.django_db


def test_a_dynamic_trifecta_call_is_denied_again_once_the_exception_is_revoked(
    client, decide_secret, triage, admin_user, state
):
    exception = RuleException.objects.create(
        workload=triage,
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        justification="Sandboxed pilot.",
        valid_until=timezone.now() + timedelta(days=1),
    )
    for slug in ("web-search", "file-read", "code-exec"):
        assert ask(client, decide_secret, tool=slug, session="before")["decision"] == "allow"

    rule_exception_revoke(exception=exception, by=admin_user, reason="The sandbox leaks.")
    commit_changes()

    assert ask(client, decide_secret, tool="web-search", session="after")["decision"] == "allow"
    assert ask(client, decide_secret, tool="file-read", session="after")["decision"] == "allow"
    third = ask(client, decide_secret, tool="code-exec", session="after")
    assert third["decision"] == "deny"
    assert third["reasons"][0]["code"] == "combination_needs_exception"
    assert "lethal-trifecta" in third["reasons"][0]["message"]


def test_a_revoked_session_window_gives_back_the_policys_call_budget(
    client, decide_secret, triage, owner, state
):
    triage.owner = owner
    triage.save(update_fields=["owner"])
    window = SessionExtension.objects.create(
        workload=triage, max_tool_calls=10_000, valid_until=timezone.now() + timedelta(days=1)
    )
    raised = ask(client, decide_secret, session="s")["obligations"]["tool_calls_left"]
    session_extension_revoke(extension=window, by=owner, reason="The long run is done.")
    commit_changes()
    back = ask(client, decide_secret, session="t")["obligations"]["tool_calls_left"]
    assert raised >= 9_999 and back < raised


def test_the_evaluator_still_counts_a_revoked_exception_for_calls_before_the_revocation(
    triage, admin_user
):
    """A late evaluation must not raise findings for calls the exception covered then."""
    from governance.evaluation.snapshot import policy_snapshots

    exception = RuleException.objects.create(
        workload=triage,
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        justification="Sandboxed pilot.",
        valid_from=timezone.now() - timedelta(hours=2),
        valid_until=timezone.now() + timedelta(days=1),
    )
    rule_exception_revoke(exception=exception, by=admin_user, reason="The sandbox leaks.")
    window = policy_snapshots([triage.id], at=timezone.now())[triage.id].exceptions[0]
    assert window.valid_at(timezone.now() - timedelta(hours=1))
    assert not window.valid_at(timezone.now() + timedelta(seconds=1))
