"""Whole numbers from client text: ASCII digits only, and never an int() of thousands of
digits (Python refuses those with a ValueError, which became 500s)."""

import pytest
from django.urls import reverse

from governance.numbers import SATURATED, whole_number
from tests.evaluation.rows import make_session
from tests.factories import ClassifiedWorkloadFactory

LONG = "9" * 5000


def test_whole_numbers():
    assert whole_number("0") == 0
    assert whole_number("42") == 42
    assert whole_number(LONG) == SATURATED
    for refused in (None, "", "-1", "1.5", " 1", "²", "٣", "1e3"):
        assert whole_number(refused) is None


@pytest.mark.django_db
def test_pages_and_windows_of_thousands_of_digits_are_not_500s(admin_client):
    unused = admin_client.get(reverse("workloads:unused_grants"), {"days": LONG})
    assert unused.status_code == 200 and unused.context["days"] == 30
    api = admin_client.get("/api/v1/workloads", {"page": LONG})
    assert api.status_code == 404  # a page past the last, as DRF answers any such page
    session = make_session(ClassifiedWorkloadFactory())
    timeline = admin_client.get(reverse("usage:timeline", args=[session.pk]), {"page": LONG})
    assert timeline.status_code == 404
