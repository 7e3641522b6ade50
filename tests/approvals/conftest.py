"""Fixtures for the approval workflow: tasks run eagerly so notification emails land in
mail.outbox; a second approver and a second iam_admin for multi-step requests."""

import pytest
from django.contrib.auth.models import Group

from governance.celery import app as celery_app
from governance.roles import APPROVER, IAM_ADMIN
from tests.factories import ClassifiedWorkloadFactory, UserFactory, tier


@pytest.fixture(autouse=True)
def _eager_tasks():
    before = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = before


def user_with(name: str, *roles: str):
    user = UserFactory(username=name)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def approver2(cast):
    return user_with("approver2", APPROVER)


@pytest.fixture
def admin2(cast):
    return user_with("admin2", IAM_ADMIN)


@pytest.fixture
def read_workload(owner):
    """internal-read: one approval."""
    return ClassifiedWorkloadFactory(slug="reader", owner=owner, tier=tier("internal-read"))


@pytest.fixture
def boundary_workload(owner):
    """boundary-crossing: two approvals, an end date required."""
    return ClassifiedWorkloadFactory(
        slug="research-agent", owner=owner, tier=tier("boundary-crossing")
    )
