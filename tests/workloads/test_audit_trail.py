"""A workload's audit trail: one query over every kind of object it covers (bench/pages.py
found the OR-ed version walking the whole audit log)."""

import pytest
from django.db import transaction

from governance.audit import audit_record
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.selectors import workload_audit_trail

pytestmark = pytest.mark.django_db


def _record(obj, action):
    with transaction.atomic():
        return audit_record(by=None, action=action, obj=obj)


def test_the_audit_trail_merges_the_workload_its_grants_newest_first_and_pages(
    django_assert_num_queries,
):
    workload = ClassifiedWorkloadFactory()
    grant = EntitlementFactory(workload=workload)
    other = EntitlementFactory()  # another workload's grant: not in the trail
    expected = []
    for n in range(3):
        expected.append(_record(workload, f"workload.step{n}").pk)
        expected.append(_record(grant, f"grant.step{n}").pk)
        _record(other, f"grant.elsewhere{n}")
        _record(other.workload, f"workload.elsewhere{n}")
    trail = workload_audit_trail(workload=workload)
    with django_assert_num_queries(2):
        assert trail.count() == 6
        assert [e.pk for e in trail[:4]] == sorted(expected, reverse=True)[:4]
