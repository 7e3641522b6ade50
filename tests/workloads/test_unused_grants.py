"""The unused-grant recommendation: evaluation keeps each tool's last use, the console lists
grants nobody used within the window and revokes them with a reason."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.evaluation.services import events_evaluate
from governance.models import AuditEvent
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import Entitlement, Tool
from workloads.selectors import grants_unused

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _grant(workload, slug, *, held_days=60):
    return EntitlementFactory(
        workload=workload,
        tool=Tool.objects.get(slug=slug),
        valid_from=NOW - timedelta(days=held_days),
        valid_until=None,
    )


def _last_use(workload, slug, days_ago):
    Entitlement.objects.filter(workload=workload, tool__slug=slug).update(
        last_used_at=NOW - timedelta(days=days_ago)
    )


def test_evaluation_keeps_each_tools_last_call_and_never_moves_it_back():
    workload = ClassifiedWorkloadFactory()
    grant = _grant(workload, "web-search")
    other = _grant(workload, "file-read")
    session = make_session(workload)
    events = add_events(
        session,
        ("tool_call", 1, {"tool": "web-search"}),
        ("tool_call", 5, {"tool": "web-search"}),
        ("reasoning_step", 9, {}),
    )
    events_evaluate(**id_range(events))
    grant.refresh_from_db()
    latest = max(e.occurred_at for e in events if e.type == "tool_call")
    assert grant.last_used_at == latest
    older = add_events(session, ("tool_call", -100, {"tool": "web-search"}))
    events_evaluate(**id_range(older))
    grant.refresh_from_db()
    assert grant.last_used_at == latest
    other.refresh_from_db()
    assert other.last_used_at is None  # only the tool called


def test_the_list_holds_grants_unused_within_the_window_least_recently_used_first(admin_user):
    workload = ClassifiedWorkloadFactory()
    never = _grant(workload, "web-search")
    stale = _grant(workload, "file-read")
    _last_use(workload, "file-read", 45)
    _grant(workload, "crm-api")
    _last_use(workload, "crm-api", 2)  # used lately
    _grant(workload, "code-exec", held_days=10)  # not held long enough to judge
    listed = list(grants_unused(user=admin_user, at=NOW, days=30))
    assert listed == [never, stale]
    assert listed[1].last_used_at == NOW - timedelta(days=45)
    assert list(grants_unused(user=admin_user, at=NOW, days=60)) == [never]  # used 45 days ago
    assert list(grants_unused(user=admin_user, at=NOW, days=90)) == []


def test_an_iam_admin_revokes_an_unused_grant_with_its_reason(admin_client):
    workload = ClassifiedWorkloadFactory()
    grant = _grant(workload, "web-search")
    page = admin_client.get(reverse("workloads:unused_grants")).content.decode()
    assert f'id="unused-{grant.pk}"' in page and "never" in page
    response = admin_client.post(
        reverse("workloads:unused_grant_revoke", args=[grant.pk]),
        {"reason": "Not used since March", "days": "30", "page": "1"},
    )
    assert response.status_code == 303
    assert response["Location"] == reverse("workloads:unused_grants") + "?days=30&page=1"
    grant.refresh_from_db()
    assert grant.status == Entitlement.Status.REVOKED
    event = AuditEvent.objects.get(action="grant.revoke", object_id=str(grant.pk))
    assert "Not used since March" in str(event.after)


def test_a_grant_in_use_cannot_be_revoked_from_the_list(admin_client):
    workload = ClassifiedWorkloadFactory()
    grant = _grant(workload, "web-search")
    _last_use(workload, "web-search", 1)
    url = reverse("workloads:unused_grant_revoke", args=[grant.pk])
    assert admin_client.post(url, {"days": "30"}).status_code == 404
    grant.refresh_from_db()
    assert grant.status == Entitlement.Status.ACTIVE


def test_owners_do_not_see_the_list(client, owner):
    client.force_login(owner)
    assert client.get(reverse("workloads:unused_grants")).status_code == 403


@pytest.mark.parametrize("rows", [2, 12])
def test_the_list_runs_a_constant_number_of_queries(
    admin_client, rows, django_assert_max_num_queries
):
    for n in range(rows):
        _grant(ClassifiedWorkloadFactory(slug=f"w{n}"), "web-search")
    with django_assert_max_num_queries(9):
        response = admin_client.get(reverse("workloads:unused_grants"))
    assert response.content.decode().count('<tr id="unused-') == rows


def test_the_workload_page_shows_when_each_grant_was_last_used(admin_client):
    workload = ClassifiedWorkloadFactory()
    _grant(workload, "web-search")
    _grant(workload, "file-read")
    _last_use(workload, "file-read", 3)
    page = admin_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert "<th>Last used</th>" in page
    assert "3\xa0days ago" in page and ">never<" in page


def test_a_call_before_a_grant_began_is_not_its_use():
    from governance.evaluation.store import tool_uses_record

    workload = ClassifiedWorkloadFactory()
    grant = _grant(workload, "web-search", held_days=10)
    tool_uses_record({(workload.pk, "web-search"): NOW - timedelta(days=20)})
    grant.refresh_from_db()
    assert grant.last_used_at is None
    tool_uses_record({(workload.pk, "web-search"): NOW - timedelta(days=2)})
    grant.refresh_from_db()
    assert grant.last_used_at == NOW - timedelta(days=2)
    tool_uses_record({(workload.pk, "web-search"): NOW - timedelta(days=2, minutes=-30)})
    grant.refresh_from_db()
    assert grant.last_used_at == NOW - timedelta(days=2)  # kept to the hour: not rewritten


def test_a_call_dated_ahead_of_its_arrival_counts_as_used_when_it_arrived():
    workload = ClassifiedWorkloadFactory()
    grant = _grant(workload, "web-search")
    session = make_session(workload)
    (ahead,) = add_events(session, ("tool_call", 3 * 3600, {"tool": "web-search"}))
    events_evaluate(**id_range([ahead]))
    grant.refresh_from_db()
    assert grant.last_used_at == ahead.received_at < ahead.occurred_at
