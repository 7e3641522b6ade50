"""Records name their related objects when they are loaded, and never query to do it: the
audit log stores these names as each event's object."""

import pytest

from governance.models import AuditEvent
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, ToolFactory
from workloads import services
from workloads.models import Entitlement, Session

pytestmark = pytest.mark.django_db


def test_a_grant_names_its_workload_and_tool_when_they_are_loaded(django_assert_num_queries):
    grant = EntitlementFactory(
        workload=ClassifiedWorkloadFactory(slug="data-analyst"), tool=ToolFactory(slug="sql")
    )
    assert str(grant) == "data-analyst:sql"

    fresh = Entitlement.objects.get(pk=grant.pk)
    with django_assert_num_queries(0):
        assert str(fresh) == f"{grant.workload_id}:{grant.tool_id}"


def test_a_session_names_its_workload_when_it_is_loaded():
    workload = ClassifiedWorkloadFactory(slug="triage")
    session = Session.objects.create(workload=workload, external_id="run-1")

    assert str(session) == "triage/run-1"
    assert str(Session.objects.get(pk=session.pk)) == f"{workload.pk}/run-1"


def test_the_audit_event_of_a_grant_names_it(admin_user):
    workload = ClassifiedWorkloadFactory(slug="named")
    tool = ToolFactory(slug="web-fetch")

    services.entitlement_grant(
        reason="Needed for the test.", workload=workload, tool=tool, by=admin_user
    )

    event = AuditEvent.objects.get(action="grant.create")
    assert event.object_repr == "named:web-fetch"
