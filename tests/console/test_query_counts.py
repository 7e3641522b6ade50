"""Every console list page runs the same number of queries for 5 rows as for 50."""

import pytest
from django.db import transaction
from django.urls import reverse

from governance.audit import audit_record, audit_snapshot
from governance.tokens import service_token_create
from tests.factories import (
    ClassifiedWorkloadFactory,
    EntitlementFactory,
    ToolFactory,
    UserFactory,
    WorkloadFactory,
)
from workloads.models import CombinationRule, Entitlement
from workloads.services import GRANT_AUDIT_FIELDS

pytestmark = pytest.mark.django_db
# Constant, not minimal: the detail page also shows exceptions, windows, session approvals,
# requests, narrowings in force and, for a workload whose sessions need approval, the sessions
# refused.
MAX_QUERIES = 21


def _grow_workloads(n, start):
    for i in range(start, start + n):
        factory = ClassifiedWorkloadFactory if i % 2 else WorkloadFactory
        factory(slug=f"qc-{i}", owner=UserFactory(username=f"qc-owner-{i}"))


def _grow_tools(n, start):
    for i in range(start, start + n):
        tool = ToolFactory(slug=f"qc-tool-{i}")
        EntitlementFactory(tool=tool)


def _grow_rules(n, start):
    for i in range(start, start + n):
        CombinationRule.objects.create(
            slug=f"qc-rule-{i}", name=f"Rule {i}", groups=[["web_access"], ["messaging"]]
        )


def _grow_audit(n, start, user=None):
    with transaction.atomic():
        for i in range(start, start + n):
            audit_record(
                by=user,
                action="test.event",
                object_type="test.thing",
                object_id=str(i),
                before={"n": i},
                after={"n": i + 1},
            )


def _grow_tokens(n, start):
    bound = [ClassifiedWorkloadFactory(slug=f"qc-bound-{start}")]
    for i in range(start, start + n):
        service_token_create(name=f"qc-token-{i}", scopes=["read"], workloads=bound)


def _queries(client, url, django_assert_max_num_queries) -> int:
    with django_assert_max_num_queries(MAX_QUERIES) as captured:
        response = client.get(url)
    assert response.status_code == 200
    shown = response.context.get("page") or response.context.get("unclassified")
    assert shown is None or len(shown) > 0, "the page must actually show the rows it grew"
    return len(captured.captured_queries)


@pytest.mark.parametrize(
    ("url_name", "grow"),
    [
        ("workloads:list", _grow_workloads),
        ("workloads:tools", _grow_tools),
        ("workloads:rules", _grow_rules),
        ("audit:log", _grow_audit),
        ("tokens:list", _grow_tokens),
        ("dashboard", _grow_workloads),
    ],
)
def test_list_pages_query_count_is_constant(
    url_name, grow, admin_client, django_assert_max_num_queries
):
    url = reverse(url_name)
    grow(5, 0)
    few = _queries(admin_client, url, django_assert_max_num_queries)
    grow(45, 5)
    many = _queries(admin_client, url, django_assert_max_num_queries)
    assert few == many


def test_a_gated_workload_page_stays_constant_as_refusals_and_approvals_grow(
    admin_client, django_assert_max_num_queries
):
    from datetime import timedelta

    from django.utils import timezone

    from governance.models import Decision
    from workloads.models import SessionApproval

    workload = ClassifiedWorkloadFactory(sessions_need_approval=True)
    url = reverse("workloads:detail", args=[workload.slug])

    def grow(n, start):
        now = timezone.now()
        Decision.objects.bulk_create(
            Decision(
                workload=workload.slug,
                tool="web-search",
                session=f"run-{i}",
                decision="deny",
                reason_code="session_approval_required",
                policy_version=1,
                latency_us=10,
                decided_at=now - timedelta(seconds=i),
            )
            for i in range(start, start + n)
        )
        for i in range(start, start + n, 2):
            SessionApproval.objects.create(
                workload=workload, session=f"run-{i}", valid_until=now + timedelta(hours=1)
            )

    grow(4, 0)
    few = _queries(admin_client, url, django_assert_max_num_queries)
    grow(40, 4)
    many = _queries(admin_client, url, django_assert_max_num_queries)
    assert few == many


def test_workload_detail_query_count_is_constant(
    admin_client, admin_user, django_assert_max_num_queries
):
    workload = ClassifiedWorkloadFactory()
    url = reverse("workloads:detail", args=[workload.slug])

    def grow(n, start):
        for i in range(start, start + n):
            grant = EntitlementFactory(workload=workload, tool=ToolFactory(slug=f"qc-d-{i}"))
            if i % 2:
                Entitlement.objects.filter(pk=grant.pk).update(
                    status="revoked", revoked_by=admin_user, revoke_reason="test"
                )
        with transaction.atomic():
            for i in range(start, start + n):
                audit_record(by=admin_user, action="workload.update", obj=workload, after={"i": i})
            # Events naming related objects: their names are looked up per page, not per row.
            for grant in Entitlement.objects.filter(workload=workload)[start : start + n]:
                after = audit_snapshot(grant, GRANT_AUDIT_FIELDS)
                audit_record(by=admin_user, action="grant.create", obj=grant, after=after)

    grow(5, 0)
    few = _queries(admin_client, url, django_assert_max_num_queries)
    grow(45, 5)
    many = _queries(admin_client, url, django_assert_max_num_queries)
    assert few == many


def test_a_finding_page_stays_constant_as_comments_evidence_and_containment_grow(
    admin_client, admin_user, django_assert_max_num_queries
):
    from django.utils import timezone

    from governance.models import ContainmentAction, Finding, FindingComment

    workload = ClassifiedWorkloadFactory()
    finding = Finding.objects.create(
        kind="reasoning_loop",
        severity="high",
        workload=workload,
        summary="Loops.",
        dedupe_key="qc",
        occurred_at=timezone.now(),
    )
    url = reverse("findings:detail", args=[finding.pk])

    def grow(n, start):
        for i in range(start, start + n):
            FindingComment.objects.create(finding=finding, author=admin_user, body=f"c{i}")
            # Other findings holding measures on the same workload, and this one's own records.
            other = Finding.objects.create(
                kind="intent_drift",
                severity="high",
                workload=workload,
                summary="Drift.",
                dedupe_key=f"qc-{i}",
                occurred_at=timezone.now(),
            )
            ContainmentAction.objects.create(
                finding=other, action="gate_sessions", workload=workload
            )
        finding.evidence = list(range(start + n))
        finding.save(update_fields=["evidence"])
        if start == 0:
            ContainmentAction.objects.create(
                finding=finding,
                action="narrow_sessions",
                workload=workload,
                limits={"max_tool_calls": 5},
            )

    grow(3, 0)
    few = _queries(admin_client, url, django_assert_max_num_queries)
    grow(30, 3)
    many = _queries(admin_client, url, django_assert_max_num_queries)
    assert few == many
