"""Revoking rule exceptions and session windows; warning owners before they end; expiring them."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from governance.approvals import services, tasks
from governance.errors import Conflict, DomainError, NotAllowed
from governance.evaluation.detectors import EventData
from governance.evaluation.detectors.combinations import check_session_combination
from governance.evaluation.snapshot import policy_snapshots
from governance.models import AuditEvent
from governance.policy_version import policy_version_current
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory, UserFactory
from workloads.models import CombinationRule, RuleException, SessionExtension
from workloads.selectors import effective_session_limits

from .test_services import TRIFECTA, audited, file_request

pytestmark = pytest.mark.django_db


def exception_for(workload, *, days=5, **fields) -> RuleException:
    return RuleException.objects.create(
        workload=workload,
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        justification="Sandboxed pilot.",
        valid_until=timezone.now() + timedelta(days=days),
        **fields,
    )


def window_for(workload, *, days=5, **fields) -> SessionExtension:
    fields.setdefault("max_tool_calls", 900)
    return SessionExtension.objects.create(
        workload=workload, valid_until=timezone.now() + timedelta(days=days), **fields
    )


# --- services ----------------------------------------------------------------------------


def test_an_iam_admin_revokes_an_exception_with_a_reason_audited_and_the_policy_bumped(
    boundary_workload, admin_user
):
    exception = exception_for(boundary_workload)
    version = policy_version_current()
    services.rule_exception_revoke(exception=exception, by=admin_user, reason=" Sandbox leaks. ")
    exception.refresh_from_db()
    assert exception.status == "revoked"
    assert exception.revoked_by == admin_user and exception.revoked_at is not None
    assert exception.revoke_reason == "Sandbox leaks."
    assert policy_version_current() == version + 1
    event = AuditEvent.objects.get(action="exception.revoke", object_id=str(exception.pk))
    assert (event.before["status"], event.after["status"]) == ("active", "revoked")
    assert event.after["revoke_reason"] == "Sandbox leaks."


def test_only_an_iam_admin_revokes_an_exception(boundary_workload, owner, approver):
    exception = exception_for(boundary_workload)
    for who in (owner, approver):
        with pytest.raises(NotAllowed):
            services.rule_exception_revoke(exception=exception, by=who, reason="Mine.")
    token = service_token_create(name="t", scopes=["write"], all_workloads=True).token
    with pytest.raises(NotAllowed):
        services.rule_exception_revoke(exception=exception, by=token, reason="Automation.")
    exception.refresh_from_db()
    assert exception.status == "active"
    assert audited("exception.revoke") == 0


def test_a_revocation_needs_a_reason(boundary_workload, admin_user):
    exception = exception_for(boundary_workload)
    with pytest.raises(DomainError) as refused:
        services.rule_exception_revoke(exception=exception, by=admin_user, reason="  ")
    assert refused.value.field == "reason"
    exception.refresh_from_db()
    assert exception.status == "active"


def test_the_owner_or_an_iam_admin_revokes_a_session_window_and_an_approver_may_not(
    read_workload, owner, admin_user, approver
):
    mine, theirs = window_for(read_workload), window_for(read_workload)
    with pytest.raises(NotAllowed):
        services.session_extension_revoke(extension=mine, by=approver, reason="Too long.")
    services.session_extension_revoke(extension=mine, by=owner, reason="Run finished early.")
    services.session_extension_revoke(extension=theirs, by=admin_user, reason="Budget cut.")
    assert set(SessionExtension.objects.values_list("status", flat=True)) == {"revoked"}
    assert audited("extension.revoke") == 2


def test_revoking_what_is_no_longer_in_force_is_a_conflict(boundary_workload, admin_user):
    exception = exception_for(boundary_workload)
    services.rule_exception_revoke(exception=exception, by=admin_user, reason="Once.")
    with pytest.raises(Conflict) as twice:
        services.rule_exception_revoke(exception=exception, by=admin_user, reason="Twice.")
    assert twice.value.code == "not_active" and "revoked" in twice.value.message
    # Past its end but not yet flipped by the expiry job: expired as far as anyone can tell.
    lapsed = window_for(boundary_workload)
    SessionExtension.objects.filter(pk=lapsed.pk).update(valid_until=timezone.now())
    with pytest.raises(Conflict) as late:
        services.session_extension_revoke(extension=lapsed, by=admin_user, reason="Late.")
    assert "expired" in late.value.message
    assert audited("exception.revoke") == 1 and audited("extension.revoke") == 0


def test_a_revoked_session_window_no_longer_raises_the_limits(read_workload, owner):
    policy_calls = effective_session_limits(workload=read_workload, at=timezone.now())
    window = window_for(read_workload, max_tool_calls=(policy_calls["max_tool_calls"] or 0) + 500)
    raised = effective_session_limits(workload=read_workload, at=timezone.now())
    assert raised["max_tool_calls"] == window.max_tool_calls
    services.session_extension_revoke(extension=window, by=owner, reason="Done.")
    assert effective_session_limits(workload=read_workload, at=timezone.now()) == policy_calls


def test_a_revoked_exception_no_longer_spares_new_requests_its_step(
    boundary_workload, owner, admin_user
):
    exception = exception_for(boundary_workload)
    first = file_request(boundary_workload, owner, TRIFECTA)
    assert "exception" not in {s.kind for s in first.steps.all()}
    services.rule_exception_revoke(exception=exception, by=admin_user, reason="Withdrawn.")
    services.access_request_cancel(access_request=first, by=owner)  # else the same is pending
    again = file_request(boundary_workload, owner, TRIFECTA)
    assert [s.kind for s in again.steps.all()][-1] == "exception"


def test_the_evaluator_flags_the_combination_once_the_exception_is_revoked(
    boundary_workload, admin_user
):
    exception = exception_for(boundary_workload)
    before = timezone.now()
    used = {"web-search": "web_access", "file-read": "file_read"}

    def drafts(at):
        call = EventData(id=1, type="tool_call", occurred_at=at, tool="code-exec")
        snapshot = policy_snapshots([boundary_workload.pk], at=at)[boundary_workload.pk]
        return [d.details["rule"] for d in check_session_combination(used, call, snapshot)]

    assert drafts(before) == []
    services.rule_exception_revoke(exception=exception, by=admin_user, reason="Withdrawn.")
    assert drafts(timezone.now() + timedelta(seconds=1)) == ["lethal-trifecta"]
    assert drafts(before) == []  # it did cover the call made before the revocation


# --- expiry: warned once, then expired by the beat job ---------------------------------


def test_owners_are_warned_once_before_an_exception_or_a_session_window_ends(
    boundary_workload, owner, django_capture_on_commit_callbacks
):
    soon = exception_for(boundary_workload, days=1)
    window = window_for(boundary_workload, days=2, max_session_seconds=5400)
    exception_for(boundary_workload, days=30)  # not yet
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_warn_expiring() == 2
        assert services.grants_warn_expiring() == 0
    subjects = sorted(m.subject for m in mail.outbox)
    assert all(m.to == [owner.email] for m in mail.outbox)
    assert subjects == [
        "[Mandate] Exception to lethal-trifecta for research-agent ends soon",
        "[Mandate] Session window of research-agent ends soon",
    ]
    bodies = "\n".join(m.body for m in mail.outbox)
    assert "max session seconds 5400" in bodies and "applies again" in bodies
    assert f"/requests/new/?workload={boundary_workload.slug}" in bodies
    soon.refresh_from_db()
    window.refresh_from_db()
    assert soon.expiry_notified_at is not None and window.expiry_notified_at is not None


def test_no_warning_for_what_was_revoked_after_it_was_queued(boundary_workload, admin_user):
    exception = exception_for(boundary_workload, days=1)
    services.rule_exception_revoke(exception=exception, by=admin_user, reason="Withdrawn.")
    assert tasks.exception_expiring_notify.delay(exception.pk).get() == 0
    assert mail.outbox == []


def test_the_beat_expiry_job_expires_exceptions_and_session_windows(boundary_workload):
    exception = exception_for(boundary_workload, valid_from=timezone.now() - timedelta(days=3))
    window = window_for(boundary_workload, valid_from=timezone.now() - timedelta(days=3))
    still = window_for(boundary_workload)
    past = timezone.now() - timedelta(seconds=1)
    RuleException.objects.filter(pk=exception.pk).update(valid_until=past)
    SessionExtension.objects.filter(pk=window.pk).update(valid_until=past)
    version = policy_version_current()
    assert tasks.grants_expire.delay().get() == 2
    assert tasks.grants_expire.delay().get() == 0
    exception.refresh_from_db()
    window.refresh_from_db()
    still.refresh_from_db()
    assert (exception.status, window.status, still.status) == ("expired", "expired", "active")
    assert audited("exception.expire", exception) == 1
    assert audited("extension.expire", window) == 1
    assert policy_version_current() == version + 2


# --- the workload page ------------------------------------------------------------------


def page(client, workload) -> str:
    return client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()


def htmx_post(client, url, data):
    return client.post(url, data, headers={"HX-Request": "true", "HX-Target": "access"})


def test_an_iam_admin_sees_confirmed_revoke_forms_and_the_owner_only_the_windows(
    client, admin_user, owner, boundary_workload
):
    exception, window = exception_for(boundary_workload), window_for(boundary_workload)
    exception_url = reverse("approvals:exception_revoke", args=[exception.pk])
    window_url = reverse("approvals:window_revoke", args=[window.pk])
    client.force_login(admin_user)
    html = page(client, boundary_workload)
    assert f'hx-post="{exception_url}"' in html and f'hx-post="{window_url}"' in html
    assert 'hx-confirm="Revoke this exception? Its rule applies again at once."' in html
    client.force_login(owner)
    html = page(client, boundary_workload)
    assert exception_url not in html and f'hx-post="{window_url}"' in html


def test_revoking_an_exception_with_htmx_answers_with_the_refreshed_panel(
    client, admin_user, boundary_workload
):
    exception = exception_for(boundary_workload)
    client.force_login(admin_user)
    url = reverse("approvals:exception_revoke", args=[exception.pk])
    response = htmx_post(client, url, {f"exception-{exception.pk}-reason": "Sandbox leaks."})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="access"')
    assert "Revoked" in html and "Sandbox leaks." in html and url not in html
    exception.refresh_from_db()
    assert exception.status == "revoked"
    # The workload's audit trail shows it.
    assert "exception.revoke" in page(client, boundary_workload)


def test_a_revoke_without_a_reason_is_422_with_the_error_in_place(client, owner, boundary_workload):
    window = window_for(boundary_workload)
    client.force_login(owner)
    url = reverse("approvals:window_revoke", args=[window.pk])
    response = htmx_post(client, url, {f"window-{window.pk}-reason": ""})
    assert response.status_code == 422
    assert response["HX-Retarget"] == f"#window-revoke-{window.pk}"
    assert response["HX-Reswap"] == "outerHTML"
    html = response.content.decode()
    assert f'id="window-revoke-{window.pk}"' in html and "This field is required." in html
    assert 'hx-confirm="Revoke this session window?' in html
    window.refresh_from_db()
    assert window.status == "active"


def test_revoking_a_window_in_place_refreshes_the_limits_in_force_too(
    client, owner, boundary_workload
):
    calls = boundary_workload.tier.max_tool_calls
    window = window_for(boundary_workload, max_tool_calls=calls + 100)
    client.force_login(owner)
    url = reverse("approvals:window_revoke", args=[window.pk])
    response = htmx_post(client, url, {f"window-{window.pk}-reason": "Done early."})
    assert response.status_code == 200
    html = response.content.decode()
    entry = html[html.index(f'id="window-{window.pk}"') :].split("</li>", 1)[0]
    assert "revoked</span> granted until" in entry and f"Tool calls {calls + 100}" in entry
    policy = html[html.index('<section id="policy"') :]
    assert policy.startswith('<section id="policy" class="card" hx-swap-oob="true">')
    in_force = policy.split('data-effective="max_tool_calls">', 1)[1].split("<", 1)[0]
    assert in_force == str(calls)


def test_revoking_twice_shows_the_conflict_in_place(client, admin_user, boundary_workload):
    exception = exception_for(boundary_workload)
    services.rule_exception_revoke(exception=exception, by=admin_user, reason="First.")
    client.force_login(admin_user)
    url = reverse("approvals:exception_revoke", args=[exception.pk])
    response = htmx_post(client, url, {f"exception-{exception.pk}-reason": "Second."})
    assert response.status_code == 422
    assert "already revoked" in response.content.decode()


def test_a_plain_post_revokes_and_goes_back_to_the_workload(client, owner, boundary_workload):
    window = window_for(boundary_workload)
    client.force_login(owner)
    url = reverse("approvals:window_revoke", args=[window.pk])
    response = client.post(url, {f"window-{window.pk}-reason": "Done early."})
    assert response.status_code == 303
    assert response["Location"] == reverse("workloads:detail", args=[boundary_workload.slug])
    window.refresh_from_db()
    assert window.status == "revoked" and window.revoke_reason == "Done early."


def test_an_owner_may_not_revoke_another_owners_window_nor_an_exception(
    client, owner, boundary_workload
):
    other = ClassifiedWorkloadFactory(owner=UserFactory(username="someone-else"))
    window, exception = window_for(other), exception_for(boundary_workload)
    client.force_login(owner)
    hidden = client.post(reverse("approvals:window_revoke", args=[window.pk]), {})
    assert hidden.status_code == 404
    refused = client.post(reverse("approvals:exception_revoke", args=[exception.pk]), {})
    assert refused.status_code == 403


def test_the_workload_page_takes_constant_queries_as_exceptions_and_windows_grow(
    client, admin_user, boundary_workload, django_assert_max_num_queries
):
    def grow(n):
        for _ in range(n):
            services.rule_exception_revoke(
                exception=exception_for(boundary_workload), by=admin_user, reason="x"
            )
            exception_for(boundary_workload)
            window_for(boundary_workload)

    client.force_login(admin_user)
    grow(2)
    with django_assert_max_num_queries(60) as few:
        page(client, boundary_workload)
    grow(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = page(client, boundary_workload)
    # 34 exceptions (17 active) and 17 windows, ten of each to a page, newest first.
    assert html.count('<li id="exception-') == 10 and html.count('<li id="window-') == 10
    assert "exceptions_page=2" in html and "windows_page=2" in html
    url = reverse("workloads:detail", args=[boundary_workload.slug])
    last = client.get(url, {"exceptions_page": 4, "windows_page": 2}).content.decode()
    assert last.count('<li id="exception-') == 4 and last.count('<li id="window-') == 7
