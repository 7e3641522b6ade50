"""Audit events show related objects by name, looked up once per page."""

import pytest
from django.db import transaction
from django.urls import reverse

from governance.audit import audit_record, audit_snapshot
from governance.audit_labels import audit_labels_attach
from governance.models import AuditEvent
from governance.templatetags.mandate import audit_changes
from tests.factories import EntitlementFactory, ToolFactory, UserFactory
from workloads.services import GRANT_AUDIT_FIELDS

pytestmark = pytest.mark.django_db


def _grant_event(grant, by):
    return audit_record(
        by=by, action="grant.create", obj=grant, after=audit_snapshot(grant, GRANT_AUDIT_FIELDS)
    )


def _changes(event) -> dict:
    return {c["field"]: (c["before"], c["after"]) for c in audit_changes(event)}


def test_foreign_keys_are_shown_by_slug(admin_user):
    grant = EntitlementFactory(tool=ToolFactory(slug="code-exec"))
    _grant_event(grant, admin_user)

    (event,) = audit_labels_attach(AuditEvent.objects.filter(action="grant.create"))

    changes = _changes(event)
    assert changes["tool"] == (None, "code-exec")
    assert changes["workload"] == (None, grant.workload.slug)
    assert event.after["tool"] == grant.tool_id  # the stored event keeps the id


def test_a_change_of_user_shows_both_usernames(admin_user):
    grant = EntitlementFactory(granted_by=admin_user)
    other = UserFactory(username="second-approver")
    audit_record(
        by=admin_user,
        action="grant.update",
        obj=grant,
        before={"granted_by": admin_user.pk},
        after={"granted_by": other.pk},
    )

    (event,) = audit_labels_attach(AuditEvent.objects.filter(action="grant.update"))

    assert _changes(event)["granted_by"] == (admin_user.username, "second-approver")


def test_ids_of_deleted_objects_unknown_types_and_plain_fields_stay_as_stored(admin_user):
    grant = EntitlementFactory()
    tool = ToolFactory(slug="short-lived")
    audit_record(
        by=admin_user,
        action="grant.update",
        obj=grant,
        before={"tool": tool.pk, "status": "active", "workload": "not-an-id"},
        after={"tool": None, "status": "revoked", "workload": None},
    )
    audit_record(
        by=admin_user,
        action="test.event",
        object_type="no.such_model",
        object_id="1",
        after={"tool": tool.pk},
    )
    tool_pk = tool.pk
    tool.delete()

    grant_event, other_event = audit_labels_attach(AuditEvent.objects.order_by("id"))

    changes = _changes(grant_event)
    assert changes["tool"] == (str(tool_pk), "—")
    assert changes["status"] == ("Active", "Revoked")  # a choice reads as its label
    assert changes["workload"] == ("not-an-id", "—")
    assert _changes(other_event)["tool"] == (None, str(tool_pk))


def test_one_query_per_kind_of_related_object_however_many_events(
    admin_user, django_assert_num_queries
):
    with transaction.atomic():
        for i in range(30):
            grant = EntitlementFactory(tool=ToolFactory(slug=f"tool-{i}"), granted_by=admin_user)
            _grant_event(grant, admin_user)
    events = list(AuditEvent.objects.filter(action="grant.create"))

    # one for the workloads, one for the tools, nothing per event
    with django_assert_num_queries(2):
        audit_labels_attach(events)

    assert {e.value_labels["tool"][str(e.after["tool"])] for e in events} == {
        f"tool-{i}" for i in range(30)
    }


def test_the_audit_log_page_and_the_workload_trail_show_names(admin_client, admin_user):
    grant = EntitlementFactory(tool=ToolFactory(slug="code-exec"), granted_by=admin_user)
    _grant_event(grant, admin_user)

    for url in (reverse("audit:log"), reverse("workloads:detail", args=[grant.workload.slug])):
        html = admin_client.get(url).content.decode()
        assert "<ins>code-exec</ins>" in html, url
        assert f"<ins>{grant.tool_id}</ins>" not in html, url
