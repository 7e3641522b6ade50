import pytest

from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, tier
from workloads.models import Tool


@pytest.fixture
def workload(db):
    """A classified workload granted crm-api: a call to any other tool is unentitled."""
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="crm-api"))
    return workload
