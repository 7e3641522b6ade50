import pytest
from django.contrib.auth import get_user_model

from governance.demo import demo_needed, demo_seed
from governance.evaluation.services import events_evaluate
from governance.models import Finding
from governance.roles import ROLES
from workloads.models import UsageEvent, Workload

pytestmark = pytest.mark.django_db


def test_the_demo_seeds_one_user_per_role_and_the_loop_end_to_end(
    django_capture_on_commit_callbacks,
):
    assert demo_needed()
    with django_capture_on_commit_callbacks() as callbacks:
        credentials = demo_seed()
    assert len(credentials) == len(ROLES)
    assert get_user_model().objects.get(username="admin").check_password(credentials["admin"])
    assert not demo_needed()
    assert Workload.objects.filter(tier__isnull=True).count() == 1
    assert callbacks, "evaluation is enqueued after commit"

    ids = list(UsageEvent.objects.values_list("id", flat=True))
    events_evaluate(min_id=min(ids), max_id=max(ids))
    findings = set(Finding.objects.values_list("kind", "tool"))
    assert ("reasoning_loop", "web-search") in {(k, t) for k, t in findings}
    assert "forbidden_combination" in {k for k, _ in findings}
    assert ("unentitled_tool", "send-email") in findings
    # Tools used inside their grant's window raise nothing.
    assert ("unentitled_tool", "crm-api") not in findings
