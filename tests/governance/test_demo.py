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


@pytest.mark.django_db(transaction=True)
def test_the_demo_gateway_asks_the_real_endpoint_and_the_log_records_it(live_server, settings):
    from governance.decisions.runtime import runtime, runtime_reset
    from governance.demo_gateway import DEMO_CHECKS, demo_decisions_post, demo_token_create
    from governance.models import Decision

    settings.DECISIONS_LOG_BACKGROUND = False
    settings.DECISIONS_VERSION_LISTENER = False
    settings.DECISIONS_REDIS_URL = ""
    settings.REDIS_URL = ""
    runtime_reset()
    demo_seed()
    answers = demo_decisions_post(live_server.url, demo_token_create())
    pairs = zip(DEMO_CHECKS, answers, strict=True)
    codes = [(check[0], check[1], answer["reasons"][0]["code"]) for check, answer in pairs]
    assert codes == [
        ("support-triage", "crm-api", "allowed"),
        *[("research-assistant", "web-search", "allowed")] * 5,
        ("support-triage", "send-email", "tool_not_granted"),
        ("data-analyst", "sql-query", "allowed"),
        # Refused here, so the session never holds web access and code-exec is no trifecta.
        ("data-analyst", "web-search", "tool_not_granted"),
        ("data-analyst", "code-exec", "allowed"),
        ("release-notes-bot", "web-search", "workload_unclassified"),
    ]
    runtime().log.flush()
    logged = Decision.objects.filter(token__name="demo-gateway")
    assert logged.count() == len(DEMO_CHECKS)
    assert logged.filter(decision="deny").count() == sum(a["decision"] == "deny" for a in answers)
    runtime_reset()


def test_waiting_for_the_web_server_stops_at_once_when_the_run_command_is_stopping():
    import time

    from governance.demo_gateway import server_wait

    started = time.monotonic()
    # Nothing listens on port 9: without give_up this would wait out its timeout.
    assert not server_wait("http://127.0.0.1:9", timeout=30, give_up=lambda: True)
    assert time.monotonic() - started < 1
