"""Every routed URL, every role of the cast and anonymous: who gets in, who is refused.

The expected outcome is derived, never listed: a view's `required_permission` (set by
`@requires(...)`, or a DRF view's class attribute, or a dict keyed by HTTP method) and
`governance.roles.ROLE_PERMISSIONS` say who may. So a new route is covered the moment it is
added, and this test FAILS for a route that

* declares no permission and is not marked `public(...)`, or
* has URL kwargs but no row in SAMPLE_KWARGS below (add one, built from the `world` fixture).

Adding your routes: give each a name, then add a row to SAMPLE_KWARGS (and, for a write view,
to SAMPLE_POST so the forged POST carries data that would succeed for a permitted user). Need an
object of your own concern? Add it to `world` below or use `fx("your_fixture")` in your row.

Outcomes checked, GET and POST, per role:
  anonymous            HTML → redirect to the login page; API → 401 or 403
  without permission   403 or 404 (and a forged POST changes nothing: no audit event, no
                       policy-version bump)
  with permission      not 403, not 5xx, not sent to log in (GET only)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.views import APIView

from governance.approvals.services import access_request_create
from governance.models import AuditEvent, ContainmentAction, Finding, ReevaluationJob, ServiceToken
from governance.policy_version import policy_version_current
from governance.roles import ROLE_PERMISSIONS
from governance.tokens import service_token_create
from tests.conftest import ROLE_USERS
from tests.evaluation.rows import make_session
from tests.factories import (
    ClassifiedWorkloadFactory,
    EntitlementFactory,
    ToolFactory,
    WorkloadFactory,
)
from workloads.models import CombinationRule, RuleException, SessionApproval, SessionExtension

pytestmark = pytest.mark.django_db

# route name → kwargs to reverse it with: (world, fx) → dict. `fx(name)` gets any pytest fixture.
SAMPLE_KWARGS: dict[str, Callable[[SimpleNamespace, Callable], dict]] = {
    "workloads:detail": lambda w, fx: {"slug": w.workload.slug},
    "workloads:classify": lambda w, fx: {"slug": w.draft.slug},
    "workloads:status": lambda w, fx: {"slug": w.workload.slug},
    "workloads:session_policy": lambda w, fx: {"slug": w.workload.slug},
    "workloads:grant": lambda w, fx: {"slug": w.workload.slug},
    "workloads:grant_revoke": lambda w, fx: {"slug": w.workload.slug, "pk": w.grant.pk},
    "workloads:unused_grant_revoke": lambda w, fx: {"pk": w.grant.pk},
    "workloads:tool_edit": lambda w, fx: {"slug": w.tool.slug},
    "workloads:rule_edit": lambda w, fx: {"slug": w.rule.slug},
    "tokens:revoke": lambda w, fx: {"pk": w.token.pk},
    "workload-detail": lambda w, fx: {"slug": w.workload.slug},
    "tier-detail": lambda w, fx: {"slug": w.workload.tier.slug},
    "tool-detail": lambda w, fx: {"slug": w.tool.slug},
    "rule-detail": lambda w, fx: {"slug": w.rule.slug},
    "grant-detail": lambda w, fx: {"pk": w.grant.pk},
    "approvals:detail": lambda w, fx: {"pk": w.access_request.pk},
    "approvals:decide": lambda w, fx: {"pk": w.access_request.pk},
    "approvals:cancel": lambda w, fx: {"pk": w.access_request.pk},
    "approvals:grant_revoke": lambda w, fx: {"pk": w.grant.pk},
    "request-detail": lambda w, fx: {"pk": w.access_request.pk},
    "request-cancel": lambda w, fx: {"pk": w.access_request.pk},
    "request-approve": lambda w, fx: {"pk": w.access_request.pk},
    "request-deny": lambda w, fx: {"pk": w.access_request.pk},
    "approvals:exception_revoke": lambda w, fx: {"pk": w.exception.pk},
    "approvals:window_revoke": lambda w, fx: {"pk": w.window.pk},
    "approvals:session_approval_revoke": lambda w, fx: {"pk": w.session_approval.pk},
    "exception-detail": lambda w, fx: {"pk": w.exception.pk},
    "exception-revoke": lambda w, fx: {"pk": w.exception.pk},
    "session-window-detail": lambda w, fx: {"pk": w.window.pk},
    "session-window-revoke": lambda w, fx: {"pk": w.window.pk},
    "session-approval-detail": lambda w, fx: {"pk": w.session_approval.pk},
    "session-approval-revoke": lambda w, fx: {"pk": w.session_approval.pk},
    "findings:detail": lambda w, fx: {"pk": w.finding.pk},
    "findings:status": lambda w, fx: {"pk": w.finding.pk},
    "findings:assign": lambda w, fx: {"pk": w.finding.pk},
    "findings:comment": lambda w, fx: {"pk": w.finding.pk},
    "findings:contain": lambda w, fx: {"pk": w.finding.pk},
    "findings:narrow": lambda w, fx: {"pk": w.finding.pk},
    "findings:lift": lambda w, fx: {"slug": w.workload.slug},
    "findings:reverse_containment": lambda w, fx: {"pk": w.containment.pk},
    "findings:reevaluation_job": lambda w, fx: {"pk": w.reevaluation_job.pk},
    "usage:timeline": lambda w, fx: {"pk": w.session.pk},
    "finding-detail": lambda w, fx: {"pk": w.finding.pk},
    "finding-status": lambda w, fx: {"pk": w.finding.pk},
    "finding-assignee": lambda w, fx: {"pk": w.finding.pk},
    "finding-comments": lambda w, fx: {"pk": w.finding.pk},
    "session-detail": lambda w, fx: {"pk": w.session.pk},
    "session-events": lambda w, fx: {"pk": w.session.pk},
}

# route name → form/JSON data for the forged POST: (world) → dict. Default: empty.
SAMPLE_POST: dict[str, Callable[[SimpleNamespace], dict]] = {
    "workloads:register": lambda w: {
        "slug": "forged",
        "name": "Forged",
        "purpose": "Nothing good",
        "model_family": "o1",
        "environment": "production",
    },
    "workloads:classify": lambda w: {"tier": "boundary-crossing", "rationale": "forged"},
    "workloads:status": lambda w: {"status": "suspended"},
    "workloads:session_policy": lambda w: {"max_tool_calls": "3"},
    "workloads:grant": lambda w: {"tool": w.spare_tool.slug, "reason": "forged"},
    "workloads:grant_revoke": lambda w: {f"revoke-{w.grant.pk}-reason": "forged"},
    "workloads:unused_grant_revoke": lambda w: {"reason": "forged", "days": "30"},
    "workloads:tool_create": lambda w: {
        "slug": "forged-tool",
        "name": "Forged",
        "capability_class": "web_access",
        "risk": "low",
    },
    "workloads:tool_edit": lambda w: {
        "slug": w.tool.slug,
        "name": "Renamed",
        "capability_class": "web_access",
        "risk": "low",
    },
    "workloads:rule_create": lambda w: {
        "slug": "forged-rule",
        "name": "Forged",
        "groups": "web_access\nmessaging",
        "scope": "both",
        "effect": "forbid",
    },
    "workloads:rule_edit": lambda w: {
        "name": "Renamed",
        "groups": "web_access\nmessaging",
        "scope": "both",
        "effect": "forbid",
    },
    "tokens:create": lambda w: {"name": "forged", "scopes": ["decide"], "all_workloads": "on"},
    "finding-status": lambda w: {"status": "acknowledged", "comment": "forged"},
    "finding-assignee": lambda w: {"assignee": "admin"},
    "finding-comments": lambda w: {"body": "forged"},
    "findings:reverse_containment": lambda w: {"reason": "forged"},
    "findings:contain": lambda w: {"action": "revoke_grant", "reason": "forged"},
    "findings:narrow": lambda w: {"max_tool_calls": "1", "reason": "forged"},
    "findings:lift": lambda w: {"action": "suspend_workload", "reason": "forged"},
    "approvals:exception_revoke": lambda w: {f"exception-{w.exception.pk}-reason": "forged"},
    "approvals:window_revoke": lambda w: {f"window-{w.window.pk}-reason": "forged"},
    "approvals:session_approval_revoke": lambda w: {
        f"session-{w.session_approval.pk}-reason": "forged"
    },
    "exception-revoke": lambda w: {"reason": "forged"},
    "session-window-revoke": lambda w: {"reason": "forged"},
    "session-approval-revoke": lambda w: {"reason": "forged"},
}

API_PREFIXES = ("api/", "v1/")
MISSING = object()


@dataclasses.dataclass(frozen=True)
class Route:
    name: str | None
    route: str
    callback: Callable
    kwarg_names: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name or f"<unnamed {self.route}>"

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def is_public(self) -> bool:
        return bool(getattr(self.callback, "is_public", False))

    @property
    def is_api(self) -> bool:
        cls = self.view_class
        return (isinstance(cls, type) and issubclass(cls, APIView)) or self.route.startswith(
            API_PREFIXES
        )

    def permission(self, method: str):
        """The permission a method needs; None when nobody may; MISSING when undeclared."""
        value = getattr(self.callback, "required_permission", MISSING)
        if value is MISSING and self.view_class is not None:
            value = getattr(self.view_class, "required_permission", MISSING)
        if isinstance(value, dict):
            return value.get(method) or value.get("*")
        return value


def _walk(patterns, prefix: str = "", namespace: str = "", kwargs=()) -> Iterator[Route]:
    for entry in patterns:
        names = (*kwargs, *entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            yield from _walk(
                entry.url_patterns, prefix + str(entry.pattern), inner.strip(":"), names
            )
        elif isinstance(entry, URLPattern):
            if "format" in names:
                continue  # DRF format-suffix twin of a route that is already walked
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Route(name, prefix + str(entry.pattern), entry.callback, tuple(names))


ROUTES = list(_walk(get_resolver().url_patterns))
ROLES = [None, *ROLE_USERS]  # None is anonymous


def role_may(role: str | None, permission) -> bool:
    if role is None or permission in (None, MISSING):
        return False
    group = ROLE_USERS[role]
    return group is not None and permission in ROLE_PERMISSIONS[group]


@pytest.fixture
def world(cast, owner):
    """One of everything a route might need, owned by the cast's owner where ownership matters."""
    workload = ClassifiedWorkloadFactory(owner=owner, slug="matrix-workload")
    grant = EntitlementFactory(workload=workload, tool=ToolFactory(slug="matrix-granted"))
    issued = service_token_create(name="matrix-token", scopes=["read"], all_workloads=True)
    session = make_session(workload)
    until = timezone.now() + timedelta(days=7)
    finding = Finding.objects.create(
        kind="unentitled_tool",
        severity="high",
        workload=workload,
        session=session,
        tool="matrix-tool",
        summary="Used a tool it was not granted.",
        dedupe_key="matrix-finding",
        occurred_at=timezone.now(),
    )
    return SimpleNamespace(
        workload=workload,
        draft=WorkloadFactory(owner=owner, slug="matrix-draft"),
        grant=grant,
        tool=ToolFactory(slug="matrix-tool"),
        spare_tool=ToolFactory(slug="matrix-spare", capability_class="generation"),
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        token=issued.token,
        session=session,
        finding=finding,
        containment=ContainmentAction.objects.create(
            finding=finding, action="suspend_workload", workload=workload
        ),
        reevaluation_job=ReevaluationJob.objects.create(days=1, since=timezone.now()),
        exception=RuleException.objects.create(
            workload=workload,
            rule=CombinationRule.objects.get(slug="lethal-trifecta"),
            justification="The matrix needs one exception.",
            valid_until=until,
        ),
        window=SessionExtension.objects.create(
            workload=workload, max_tool_calls=500, valid_until=until
        ),
        session_approval=SessionApproval.objects.create(
            workload=workload, session="matrix-run", valid_until=until
        ),
        access_request=access_request_create(
            by=owner,
            workload=workload,
            tools=[ToolFactory(slug="matrix-requested")],
            justification="The matrix needs one pending request.",
            duration_days=7,
        ),
    )


def _url(route: Route, world, request) -> str:
    if not route.kwarg_names:
        return reverse(route.name)
    return reverse(route.name, kwargs=SAMPLE_KWARGS[route.name](world, request.getfixturevalue))


def _is_login_redirect(response) -> bool:
    return response.status_code in (301, 302, 303) and response["Location"].startswith(
        resolve_url(settings.LOGIN_URL)
    )


def _state():
    return AuditEvent.objects.count(), policy_version_current(), ServiceToken.objects.count()


@pytest.mark.parametrize("route", ROUTES, ids=[r.label for r in ROUTES])
def test_route_enforces_its_permission(route, client, cast, world, request):
    assert route.name, f"{route.route}: give the route a name so the matrix can address it"
    get_permission = route.permission("GET")
    post_permission = route.permission("POST")
    assert route.is_public or MISSING not in (get_permission, post_permission), (
        f"{route.label}: the view declares no required_permission (use @requires(...), a DRF "
        "required_permission, or public(...) on purpose)"
    )
    assert not route.kwarg_names or route.name in SAMPLE_KWARGS, (
        f"{route.label}: add a SAMPLE_KWARGS row for {route.kwarg_names} in {__file__}"
    )
    url = _url(route, world, request)
    roles = [None, "admin"] if route.is_public else ROLES
    failures = []
    for role in roles:
        client.logout()
        if role:
            client.force_login(cast[role])
        who = role or "anonymous"

        response = client.get(url)
        status = response.status_code
        if status >= 500:
            failures.append(f"GET as {who}: {status}")
        elif route.is_public:
            pass
        elif role is None:
            if route.is_api and status not in (401, 403, 405):
                failures.append(f"GET as anonymous: {status}, expected 401/403 (or 405)")
            if not route.is_api and not _is_login_redirect(response):
                failures.append(f"GET as anonymous: {status}, expected a redirect to log in")
        elif role_may(role, get_permission):
            if status == 403 or _is_login_redirect(response):
                failures.append(f"GET as {who} (has {get_permission}): {status}")
        elif status not in (403, 404) and not (route.is_api and status == 405):
            # 405 on a POST-only API route tells nothing about its data.
            failures.append(f"GET as {who} (lacks {get_permission}): {status}, expected 403/404")

        if route.is_public or role_may(role, post_permission):
            continue
        before = _state()
        data = SAMPLE_POST.get(route.name, lambda w: {})(world)
        response = client.post(url, data)
        status = response.status_code
        refused = {401, 403, 404, 405} if route.is_api or role is not None else {302, 303}
        if status not in refused or (
            role is None and not route.is_api and not _is_login_redirect(response)
        ):
            failures.append(f"forged POST as {who} (lacks {post_permission}): {status}")
        if _state() != before:
            failures.append(f"forged POST as {who} changed state: {before} → {_state()}")
    assert not failures, f"{route.label} {url}:\n  " + "\n  ".join(failures)


def test_the_matrix_sees_every_console_area():
    """Guards the walker itself: if it stopped descending into includes this would catch it."""
    names = {route.name for route in ROUTES}
    assert {"dashboard", "workloads:list", "workloads:detail", "audit:log", "tokens:list"} <= names
    assert any(route.is_api for route in ROUTES)
