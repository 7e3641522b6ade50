"""The permission matrix for every approvals route: who gets in, who is refused."""

from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from governance.approvals import services
from tests.factories import EntitlementFactory
from workloads.models import (
    CombinationRule,
    RuleException,
    SessionApproval,
    SessionExtension,
    Tool,
)

pytestmark = pytest.mark.django_db

ROLES = ["admin", "owner", "approver", "reviewer", "auditor", "outsider"]

# route -> (method, the roles that get past the view's and the object's checks; others: 403).
MATRIX = {
    "approvals:queue": ("get", {"admin", "owner", "approver", "reviewer", "auditor"}),
    "approvals:new": ("get", {"admin", "owner"}),
    "approvals:impact": ("get", {"admin", "owner"}),
    "approvals:detail": ("get", {"admin", "owner", "approver", "reviewer", "auditor"}),
    "approvals:decide": ("post", {"admin", "approver"}),
    "approvals:bulk": ("post", {"admin", "approver"}),
    "approvals:cancel": ("post", {"owner"}),
    "approvals:grant_revoke": ("post", {"admin", "owner"}),
    "approvals:exception_revoke": ("post", {"admin"}),
    "approvals:window_revoke": ("post", {"admin", "owner"}),
    "approvals:session_approval_revoke": ("post", {"admin", "owner"}),
}


def _approval_routes():
    resolver = get_resolver()
    names = set()

    def walk(patterns, namespace=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, p.namespace or namespace)
            elif isinstance(p, URLPattern) and namespace == "approvals":
                names.add(f"approvals:{p.name}")
                assert getattr(p.callback, "required_permission", None), p.name

    walk(resolver.url_patterns)
    return names


def test_every_approvals_route_states_a_permission_and_is_in_the_matrix():
    assert _approval_routes() == set(MATRIX)


@pytest.fixture
def objects(cast, read_workload):
    req = services.access_request_create(
        by=cast["owner"],
        workload=read_workload,
        tools=[Tool.objects.get(slug="crm-api")],
        justification="Matrix.",
        duration_days=3,
    )
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="sql-query"))
    until = timezone.now() + timedelta(days=3)
    exception = RuleException.objects.create(
        workload=read_workload,
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        justification="Matrix.",
        valid_until=until,
    )
    window = SessionExtension.objects.create(
        workload=read_workload, max_tool_calls=500, valid_until=until
    )
    session_approval = SessionApproval.objects.create(
        workload=read_workload, session="matrix-run", valid_until=until
    )
    return {
        "request": req,
        "grant": grant,
        "exception": exception,
        "window": window,
        "session_approval": session_approval,
    }


def _url(name, objects):
    if name in ("approvals:detail", "approvals:decide", "approvals:cancel"):
        return reverse(name, args=[objects["request"].pk])
    if name == "approvals:grant_revoke":
        return reverse(name, args=[objects["grant"].pk])
    if name == "approvals:exception_revoke":
        return reverse(name, args=[objects["exception"].pk])
    if name == "approvals:window_revoke":
        return reverse(name, args=[objects["window"].pk])
    if name == "approvals:session_approval_revoke":
        return reverse(name, args=[objects["session_approval"].pk])
    return reverse(name)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_anonymous_users_are_sent_to_log_in(client, objects, name):
    method, _ = MATRIX[name]
    response = getattr(client, method)(_url(name, objects))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_the_permission_matrix(client, cast, objects, name, role):
    method, allowed = MATRIX[name]
    client.force_login(cast[role])
    response = getattr(client, method)(_url(name, objects))
    if role in allowed:
        assert response.status_code != 403, (name, role)
    else:
        assert response.status_code == 403, (name, role, response.status_code)
