import json
import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from governance.decisions.runtime import runtime
from governance.decisions.state import RedisSessionStore
from governance.models import Decision
from governance.policy_version import policy_version_bump, policy_version_current
from governance.tokens import service_token_create, service_token_revoke
from tests.decisions.conftest import DECIDE_URL, ask, flush_log, post, tool
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, WorkloadFactory
from workloads import services
from workloads.models import CombinationRule, RuleException, SessionPolicy, Workload

pytestmark = pytest.mark.django_db


def test_it_allows_a_granted_tool_with_reasons_and_obligations(client, decide_secret, triage):
    answer = ask(client, decide_secret)
    assert answer["decision"] == "allow"
    assert answer["reasons"][0]["code"] == "allowed"
    assert answer["policy_version"] == policy_version_current()
    assert answer["obligations"] == {
        "session_seconds_left": None,
        "tool_calls_left": None,
        "log_level": "full_trace",
    }


def test_a_session_check_reports_the_remaining_budget(client, decide_secret, triage, state):
    answer = ask(client, decide_secret, session="s1")
    assert answer["decision"] == "allow"
    assert answer["obligations"]["tool_calls_left"] == 99
    assert answer["obligations"]["session_seconds_left"] == 1800


@pytest.mark.parametrize(
    ("workload", "tool_slug", "code"),
    [
        ("nobody", "web-search", "workload_unknown"),
        ("triage", "no-such-tool", "tool_unknown"),
        ("triage", "send-email", "tool_not_granted"),
    ],
)
def test_it_denies_unknown_or_ungranted(client, decide_secret, triage, workload, tool_slug, code):
    answer = ask(client, decide_secret, workload=workload, tool=tool_slug)
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == code


def test_it_denies_an_unclassified_workload(client, decide_secret):
    WorkloadFactory(slug="fresh")
    answer = ask(client, decide_secret, workload="fresh")
    assert answer["reasons"][0]["code"] == "workload_unclassified"


def test_it_denies_a_suspended_workload(client, decide_secret, triage, admin_user):
    assert ask(client, decide_secret)["decision"] == "allow"
    services.workload_set_status(workload=triage, status="suspended", by=admin_user, reason="x")
    answer = ask(client, decide_secret)
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "workload_not_active"


def test_a_token_not_bound_to_the_workload_gets_a_deny(client, triage):
    other = ClassifiedWorkloadFactory(slug="other")
    secret = service_token_create(name="bound", scopes=["decide"], workloads=[other]).secret
    answer = ask(client, secret)
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "token_not_bound"
    # Not bound also hides whether a workload exists.
    assert ask(client, secret, workload="nobody")["reasons"][0]["code"] == "token_not_bound"


def test_grant_validity_is_exact_at_both_boundaries(client, decide_secret):
    start = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    end = start + timedelta(hours=2)
    workload = ClassifiedWorkloadFactory(slug="timed")
    EntitlementFactory(workload=workload, tool=tool("crm-api"), valid_from=start, valid_until=end)
    expectations = [
        (start - timedelta(microseconds=1), "grant_not_yet_valid"),
        (start, "allowed"),
        (end - timedelta(microseconds=1), "allowed"),
        (end, "grant_expired"),
    ]
    for moment, code in expectations:
        with time_machine.travel(moment, tick=False):
            answer = ask(client, decide_secret, workload="timed", tool="crm-api")
        assert answer["reasons"][0]["code"] == code, moment


def test_a_revocation_is_visible_on_the_next_call(client, decide_secret, triage, admin_user, state):
    assert ask(client, decide_secret, tool="crm-api", session="s")["decision"] == "allow"
    grant = triage.entitlements.get(tool__slug="crm-api")
    services.entitlement_revoke(grant=grant, by=admin_user, reason="no longer needed")
    for session in ("s", None):
        answer = ask(client, decide_secret, tool="crm-api", session=session)
        assert answer["reasons"][0]["code"] == "tool_not_granted"


def test_trifecta_is_denied_on_the_third_tool_and_allowed_in_another_session(
    client, decide_secret, triage, state
):
    assert ask(client, decide_secret, tool="web-search", session="a")["decision"] == "allow"
    assert ask(client, decide_secret, tool="file-read", session="a")["decision"] == "allow"
    third = ask(client, decide_secret, tool="code-exec", session="a")
    assert third["decision"] == "deny"
    assert third["reasons"][0]["code"] == "combination_needs_exception"
    assert "lethal-trifecta" in third["reasons"][0]["message"]
    assert ask(client, decide_secret, tool="code-exec", session="b")["decision"] == "allow"
    # The denied call was not recorded: the session can still use its other tools.
    assert ask(client, decide_secret, tool="web-search", session="a")["decision"] == "allow"


def test_an_approved_exception_lets_the_combination_through(client, decide_secret, triage, state):
    rule = CombinationRule.objects.get(slug="lethal-trifecta")
    RuleException.objects.create(
        workload=triage,
        rule=rule,
        justification="sandboxed",
        valid_until=timezone.now() + timedelta(days=1),
    )
    for slug in ("web-search", "file-read", "code-exec"):
        assert ask(client, decide_secret, tool=slug, session="a")["decision"] == "allow"


def test_a_forbid_rule_denies_with_its_own_code(client, decide_secret, triage, admin_user, state):
    services.combination_rule_save(
        by=admin_user,
        slug="no-web-then-crm",
        name="No web then CRM",
        groups=[["web_access"], ["tool:crm-api"]],
        scope="dynamic",
        effect="forbid",
    )
    assert ask(client, decide_secret, tool="web-search", session="a")["decision"] == "allow"
    answer = ask(client, decide_secret, tool="crm-api", session="a")
    assert answer["reasons"][0]["code"] == "combination_forbidden"


def test_the_tool_call_budget_is_enforced(client, decide_secret, triage, state):
    SessionPolicy.objects.filter(workload=triage).update(max_tool_calls=2)
    policy_version_bump()
    for left in (1, 0):
        answer = ask(client, decide_secret, tool="crm-api", session="a")
        assert answer["obligations"]["tool_calls_left"] == left
    answer = ask(client, decide_secret, tool="crm-api", session="a")
    assert answer["reasons"][0]["code"] == "tool_call_budget_exhausted"


def test_the_session_window_and_idle_timeout_are_enforced(client, decide_secret, triage, state):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert ask(client, decide_secret, tool="crm-api", session="idle")["decision"] == "allow"
        assert ask(client, decide_secret, tool="crm-api", session="long")["decision"] == "allow"
    with time_machine.travel(start + timedelta(seconds=301), tick=False):
        idle = ask(client, decide_secret, tool="crm-api", session="idle")
        assert idle["reasons"][0]["code"] == "session_idle"
    for minutes in range(5, 31, 4):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            answer = ask(client, decide_secret, tool="crm-api", session="long")
    with time_machine.travel(start + timedelta(seconds=1800), tick=False):
        answer = ask(client, decide_secret, tool="crm-api", session="long")
    assert answer["reasons"][0]["code"] == "session_expired"


def test_a_session_extension_raises_the_budget(client, decide_secret, triage, state):
    SessionPolicy.objects.filter(workload=triage).update(max_tool_calls=1)
    triage.extensions.create(max_tool_calls=3, valid_until=timezone.now() + timedelta(hours=1))
    policy_version_bump()
    answer = ask(client, decide_secret, tool="crm-api", session="a")
    assert answer["obligations"]["tool_calls_left"] == 2


def test_the_hot_path_issues_no_database_query(
    client, decide_secret, triage, django_assert_num_queries, state
):
    ask(client, decide_secret, session="warm")  # compiles the snapshot
    with django_assert_num_queries(0):
        ask(client, decide_secret, tool="crm-api", session="warm")
        ask(client, decide_secret, tool="crm-api")
        post(client, decide_secret, {"checks": [{"workload": "triage", "tool": "crm-api"}]})


def test_a_session_check_is_one_redis_round_trip(client, decide_secret, triage, redis_state):
    ask(client, decide_secret, session="warm")
    store = runtime().store
    assert isinstance(store, RedisSessionStore)
    calls = []
    through_redis_py, through_wire = store.client.execute_command, store.wire.request

    def counting(original, name):
        def call(*args, **kwargs):
            calls.append(name(args))
            return original(*args, **kwargs)

        return call

    store.client.execute_command = counting(through_redis_py, lambda args: args[0])
    store.wire.request = counting(through_wire, lambda args: args[0].split(b"\r\n")[2])
    ask(client, decide_secret, tool="crm-api", session="warm")
    assert calls == [b"EVALSHA"]
    calls.clear()
    ask(client, decide_secret, tool="crm-api")  # sessionless: none
    assert calls == []


def test_concurrent_calls_never_exceed_the_budget(decide_secret, triage, redis_state):
    from django.test import Client

    SessionPolicy.objects.filter(workload=triage).update(max_tool_calls=7)
    policy_version_bump()
    Client().post(DECIDE_URL)  # builds the runtime in this thread
    ask(Client(), decide_secret, tool="crm-api", session="warm")
    runtime().holder.check_interval = 3600  # the threads share this process's snapshot
    answers = []

    def worker():
        c = Client()
        for _ in range(5):
            answers.append(ask(c, decide_secret, tool="crm-api", session="race")["decision"])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count("allow") == 7
    assert len(answers) == 30


def test_a_new_version_from_another_process_is_seen_by_the_session_check(
    client, decide_secret, triage, redis_state
):
    assert ask(client, decide_secret, tool="crm-api", session="s")["decision"] == "allow"
    runtime().holder.check_interval = 3600  # only the script can notice
    # Another process revokes: the database changes and the version is published.
    triage.entitlements.filter(tool__slug="crm-api").update(status="revoked")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE governance_policystate SET version = version + 1 WHERE id = 1")
    runtime().store.publish(policy_version_current())
    answer = ask(client, decide_secret, tool="crm-api", session="s")
    assert answer["reasons"][0]["code"] == "tool_not_granted"


def test_it_fails_closed_when_the_database_is_unavailable(client, decide_secret, triage, state):
    from unittest import mock

    from django.db.utils import OperationalError

    assert ask(client, decide_secret, session="s")["decision"] == "allow"
    policy_version_bump()  # this process must re-read the policy
    db_down = mock.patch(
        "django.db.backends.utils.CursorWrapper.execute",
        side_effect=OperationalError("database is down"),
    )
    with db_down:
        for session in (None, "s"):
            body = {"workload": "triage", "tool": "web-search", "session": session}
            response = post(client, decide_secret, body)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            assert response["Retry-After"] == "1"
    assert ask(client, decide_secret, session="s")["decision"] == "allow"


def test_a_confirmed_snapshot_expires_after_the_check_interval(client, decide_secret, triage):
    """Without a local change, a database outage is noticed within the check interval."""
    from unittest import mock

    from django.db.utils import OperationalError

    assert ask(client, decide_secret)["decision"] == "allow"
    runtime().holder.check_interval = 0
    with mock.patch(
        "django.db.backends.utils.CursorWrapper.execute",
        side_effect=OperationalError("database is down"),
    ):
        response = post(client, decide_secret, {"workload": "triage", "tool": "web-search"})
    assert response.status_code == 503


def test_it_fails_closed_when_redis_is_unavailable(client, decide_secret, triage, settings):
    settings.DECISIONS_REDIS_URL = "redis://127.0.0.1:1/0"
    from governance.decisions.runtime import runtime_reset

    runtime_reset()
    response = post(client, decide_secret, {"workload": "triage", "tool": "web-search"})
    assert response.status_code == 503


def test_it_fails_closed_on_an_unknown_policy_version(client, decide_secret, triage, redis_state):
    assert ask(client, decide_secret, session="s")["decision"] == "allow"
    store = runtime().store
    store.client.set(store.version_key, policy_version_current() + 5)
    response = post(
        client, decide_secret, {"workload": "triage", "tool": "crm-api", "session": "s"}
    )
    assert response.status_code == 503


def test_a_token_without_the_decide_scope_gets_403(client, triage):
    secret = service_token_create(name="reader", scopes=["read"], all_workloads=True).secret
    response = post(client, secret, {"workload": "triage", "tool": "web-search"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_missing_or_revoked_token_gets_401(client, triage, admin_user):
    assert post(client, "mnd_nope", {"workload": "triage", "tool": "x"}).status_code == 401
    issued = service_token_create(name="gone", scopes=["decide"], all_workloads=True)
    assert ask(client, issued.secret)["decision"] == "allow"
    service_token_revoke(token=issued.token, by=admin_user)
    response = post(client, issued.secret, {"workload": "triage", "tool": "web-search"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_browser_session_cannot_decide(client, admin_user, triage):
    client.force_login(admin_user)
    response = client.post(DECIDE_URL, data="{}", content_type="application/json")
    assert response.status_code == 401


def test_a_batch_answers_each_check_with_its_correlation_id(client, decide_secret, triage, state):
    response = post(
        client,
        decide_secret,
        {
            "checks": [
                {"id": "c1", "workload": "triage", "tool": "web-search", "session": "b"},
                {"id": "c2", "workload": "triage", "tool": "send-email", "session": "b"},
                {"workload": "triage", "tool": "file-read", "session": "b"},
                {"id": "c4", "workload": "triage", "tool": "code-exec", "session": "b"},
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["decision"] for r in results] == ["allow", "deny", "allow", "deny"]
    assert results[0]["id"] == "c1" and results[1]["id"] == "c2" and results[3]["id"] == "c4"
    assert len(results[2]["id"]) == 32
    assert results[3]["reasons"][0]["code"] == "combination_needs_exception"


def test_batch_limits(client, decide_secret, triage, settings):
    settings.DECISIONS_BATCH_MAX = 3
    check = {"workload": "triage", "tool": "web-search"}
    too_many = post(client, decide_secret, {"checks": [check] * 4})
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_large"
    assert post(client, decide_secret, {"checks": []}).status_code == 400
    settings.DECISIONS_MAX_BODY = 100
    assert post(client, decide_secret, {"checks": [check] * 3}).status_code == 413


def test_malformed_requests_get_400(client, decide_secret, triage):
    response = client.post(
        DECIDE_URL,
        data="{nope",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {decide_secret}",
    )
    assert response.status_code == 400
    assert post(client, decide_secret, {"workload": 3, "tool": "x"}).status_code == 400
    assert post(client, decide_secret, ["x"]).status_code == 400
    assert client.get(DECIDE_URL).status_code == 405


def test_a_field_it_does_not_know_is_refused_not_ignored(client, decide_secret, triage):
    # A misspelt "session" must not quietly turn a session check into a sessionless one.
    single = post(
        client, decide_secret, {"workload": "triage", "tool": "web-search", "sesion": "s1"}
    )
    assert single.status_code == 400
    assert list(single.json()["error"]["fields"]) == ["sesion"]
    check = {"workload": "triage", "tool": "web-search"}
    batch = post(client, decide_secret, {"checks": [check, {**check, "contxt": {}}]})
    assert batch.status_code == 200
    assert list(batch.json()["results"][1]["error"]["fields"]) == ["contxt"]
    assert flush_log() == 1  # the well-formed check's answer only
    extra = post(client, decide_secret, {"checks": [check], "dry_run": True})
    assert (extra.status_code, list(extra.json()["error"]["fields"])) == (400, ["dry_run"])
    assert flush_log() == 0


def test_every_decision_is_logged(client, decide_secret, triage, state):
    ask(client, decide_secret, session="s1", context={"prompt_id": "p"})
    ask(client, decide_secret, tool="send-email", session="s1")
    assert Decision.objects.count() == 0  # nothing written on the request's path
    assert flush_log() == 2
    allow, deny = Decision.objects.order_by("id")
    assert (allow.decision, allow.reason_code, allow.session) == ("allow", "allowed", "s1")
    assert allow.context == {"prompt_id": "p"}
    assert deny.reasons[0]["code"] == "tool_not_granted"
    assert deny.policy_version == policy_version_current()
    assert deny.token.name == "gateway"
    assert deny.token.last_used_at is not None


def test_the_fast_path_skips_the_middleware_stack(client, decide_secret, triage):
    response = post(client, decide_secret, {"workload": "triage", "tool": "web-search"})
    assert "Set-Cookie" not in response and "Content-Security-Policy" not in response
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Request-ID"]


def test_it_still_works_through_the_full_stack(client, decide_secret, triage, settings):
    settings.DECISIONS_FAST_PATH = False
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "FastPath" not in m]
    assert ask(client, decide_secret)["decision"] == "allow"


def test_a_retired_workload_is_denied(client, decide_secret, triage):
    Workload.objects.filter(pk=triage.pk).update(status="retired")
    policy_version_bump()
    assert ask(client, decide_secret)["reasons"][0]["code"] == "workload_not_active"


def test_a_body_nested_past_the_recursion_limit_gets_400_not_500(client, decide_secret, triage):
    nested = '{"workload": "triage", "tool": "crm-api", "context": ' + "[" * 5000 + "]" * 5000
    for body in ("[" * 5000 + "]" * 5000, nested + "}"):
        response = client.post(
            DECIDE_URL,
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {decide_secret}"},
        )
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "invalid",
            "message": "The body nests too deeply.",
        }


def test_a_context_over_its_limit_gets_400_and_a_fitting_one_is_logged(
    client, decide_secret, triage, settings
):
    settings.DECISIONS_CONTEXT_MAX = 64
    too_big = post(
        client, decide_secret, {"workload": "triage", "tool": "crm-api", "context": {"x": "y" * 64}}
    )
    assert too_big.status_code == 400
    assert too_big.json()["error"]["fields"] == {"context": ["At most 64 bytes of JSON."]}
    batch = post(
        client,
        decide_secret,
        {"checks": [{"workload": "triage", "tool": "crm-api", "context": {"x": "y" * 64}}]},
    )
    [refused] = batch.json()["results"]
    assert refused["error"]["fields"] == {"context": ["At most 64 bytes of JSON."]}
    fits = post(
        client, decide_secret, {"workload": "triage", "tool": "crm-api", "context": {"step": 3}}
    )
    assert fits.status_code == 200
    runtime().log.flush()
    assert Decision.objects.get().context == {"step": 3}


def test_a_content_length_that_is_not_a_number_gets_400(client, decide_secret, triage):
    response = post(
        client, decide_secret, {"workload": "triage", "tool": "web-search"}, CONTENT_LENGTH="lots"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_the_body_is_read_up_to_its_content_length(client, decide_secret, triage):
    # The view reads the server's stream itself: exactly Content-Length bytes, no more.
    body = b'{"workload": "triage", "tool": "web-search"}'
    response = client.generic(
        "POST",
        DECIDE_URL,
        body + b"trailing bytes past the declared length",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {decide_secret}",
        CONTENT_LENGTH=str(len(body)),
    )
    assert response.status_code == 200
    assert response.json()["decision"] == "allow"


def test_a_malformed_check_in_a_batch_gets_its_own_error_and_the_rest_their_answers(
    client, decide_secret, triage
):
    check = {"workload": "triage", "tool": "web-search"}
    response = post(
        client,
        decide_secret,
        {
            "checks": [
                {**check, "id": "c1"},
                {"id": "c2", "workload": "triage"},
                "not a check",
                {"id": "x" * 65, "workload": "triage", "tool": "crm-api"},
                {**check, "tool": "send-email", "id": "c5"},
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r.get("decision") for r in results] == ["allow", None, None, None, "deny"]
    assert [r["id"] for r in results] == ["c1", "c2", None, None, "c5"]
    assert results[1]["error"]["code"] == "invalid"
    assert list(results[1]["error"]["fields"]) == ["tool"]
    # A non-object check is reported under the usual key, not "checks[2]." (a stray dot).
    assert results[2]["error"]["fields"] == {"non_field_errors": ["Expected an object."]}
    assert list(results[3]["error"]["fields"]) == ["id"]
    assert results[1].keys() == {"id", "error"}  # no decision for a check never judged
    assert flush_log() == 2
    assert sorted(Decision.objects.values_list("correlation_id", flat=True)) == ["c1", "c5"]


def test_a_batch_of_only_malformed_checks_answers_each(client, decide_secret, triage):
    response = post(client, decide_secret, {"checks": [{"workload": "triage"}, 7]})
    assert response.status_code == 200
    assert [r["error"]["code"] for r in response.json()["results"]] == ["invalid", "invalid"]
    assert flush_log() == 0


def test_a_malformed_envelope_or_single_check_is_still_a_400(client, decide_secret, triage):
    for body in (
        {"checks": "all of them"},
        {"checks": {"workload": "triage"}},
        {"checks": [{"workload": "triage"}], "id": "x"},
        {"workload": "triage"},
        ["not", "an", "object"],
    ):
        response = post(client, decide_secret, body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid"
    single = post(client, decide_secret, 7)
    assert single.json()["error"]["fields"] == {"non_field_errors": ["Expected an object."]}
    assert flush_log() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_gets_415(client, decide_secret, triage, content_type):
    response = client.post(
        DECIDE_URL,
        data=json.dumps({"workload": "triage", "tool": "web-search"}),
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {decide_secret}",
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert flush_log() == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/vnd.x+json", ""]
)
def test_json_or_an_unstated_type_is_answered(client, decide_secret, triage, content_type):
    response = client.generic(
        "POST",
        DECIDE_URL,
        json.dumps({"workload": "triage", "tool": "web-search"}),
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {decide_secret}",
    )
    assert response.status_code == 200, response.content
