import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.approvals import services
from governance.models import AccessRequest, ApprovalDecision, AuditEvent
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, tier
from workloads.models import Entitlement, Tool

pytestmark = pytest.mark.django_db

TRIFECTA = ["web-search", "file-read", "code-exec"]


def file_request(workload, by, slugs=("crm-api",), **kwargs):
    kwargs.setdefault("duration_days", 10)
    return services.access_request_create(
        by=by,
        workload=workload,
        tools=list(Tool.objects.filter(slug__in=slugs)),
        justification="For the review.",
        **kwargs,
    )


def many_requests(n, owner):
    for i in range(n):
        workload = ClassifiedWorkloadFactory(
            slug=f"w-{i}-{AccessRequest.objects.count()}", owner=owner, tier=tier("internal-read")
        )
        file_request(workload, owner, ("crm-api", "sql-query"))


def test_the_queue_shows_pending_requests_with_tier_purpose_tools_and_age(
    client, approver, read_workload, owner
):
    req = file_request(read_workload, owner, ("crm-api",))
    client.force_login(approver)
    response = client.get(reverse("approvals:queue"))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"#{req.pk}" in body and "Internal read" in body and "crm-api" in body
    assert read_workload.purpose[:40] in body
    assert f'hx-post="/requests/{req.pk}/decide/"' in body


@pytest.mark.parametrize("rows", [2, 12])
def test_the_queue_runs_a_constant_number_of_queries(
    client, approver, owner, rows, django_assert_max_num_queries
):
    many_requests(rows, owner)
    client.force_login(approver)
    with django_assert_max_num_queries(9):
        response = client.get(reverse("approvals:queue"))
    assert response.content.decode().count('class="request-row"') == rows


def test_the_queue_answers_htmx_with_the_table_fragment(client, approver, read_workload, owner):
    file_request(read_workload, owner)
    client.force_login(approver)
    response = client.get(reverse("approvals:queue") + "?view=all", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert 'id="request-table"' in body and "<html" not in body


def test_awaiting_my_decision_shows_no_status_filter_it_would_ignore(
    client, approver, read_workload, owner
):
    req = file_request(read_workload, owner)
    client.force_login(approver)
    url = reverse("approvals:queue")

    body = client.get(url, {"view": "awaiting", "status": "approved"}).content.decode()

    assert f"#{req.pk}" in body  # pending: what the view lists, whatever the link said
    status_select = re.search(r'<select name="status"[^>]*>.*?</select>', body, re.S).group(0)
    assert "disabled" in status_select and 'value="approved"' not in status_select
    assert "pending requests only" in body
    listed = client.get(url, {"view": "all", "status": "approved"}).content.decode()
    assert f"#{req.pk}" not in listed and '<option value="approved" selected>' in listed


def test_an_htmx_change_of_view_swaps_in_the_matching_status_filter(client, approver):
    client.force_login(approver)
    url = reverse("approvals:queue")
    awaiting = client.get(url, {"view": "awaiting"}, headers={"HX-Request": "true"})
    body = awaiting.content.decode()
    assert 'id="status-filter" hx-swap-oob="true"' in body and "disabled" in body
    every = client.get(url, {"view": "all"}, headers={"HX-Request": "true"}).content.decode()
    assert 'id="status-filter" hx-swap-oob="true"' in every
    assert '<select name="status">' in every
    full = client.get(url, {"view": "all"}).content.decode()
    assert full.count('id="status-filter"') == 1 and "hx-swap-oob" not in full


def test_the_owner_sees_their_requests_status_but_no_decision_form(client, owner, read_workload):
    req = file_request(read_workload, owner)
    client.force_login(owner)
    body = client.get(reverse("approvals:queue")).content.decode()
    assert f"#{req.pk}" in body and "Pending" in body
    assert "decide" not in body
    detail = client.get(reverse("approvals:detail", args=[req.pk])).content.decode()
    assert 'value="approve"' not in detail
    assert "You are not an approver" in detail


def test_the_impact_preview_warns_about_the_trifecta_as_tools_are_picked(
    client, owner, boundary_workload
):
    client.force_login(owner)
    url = reverse("approvals:impact")
    response = client.get(url, {"workload": boundary_workload.slug, "tools": TRIFECTA})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "Lethal trifecta" in body and "iam_admin" in body
    assert "3 approvals needed" in body
    quiet = client.get(url, {"workload": boundary_workload.slug, "tools": ["crm-api"]})
    assert "Lethal trifecta" not in quiet.content.decode()
    assert "2 approvals needed" in quiet.content.decode()


def test_the_impact_preview_names_a_forbid_rule_and_redundant_grants(client, owner, read_workload):
    from workloads.models import CombinationRule

    CombinationRule.objects.create(
        slug="no-crm-mail",
        name="No CRM mail-out",
        groups=[["tool:crm-api"], ["tool:send-email"]],
        scope="static",
        effect="forbid",
    )
    EntitlementFactory(
        workload=read_workload,
        tool=Tool.objects.get(slug="crm-api"),
        valid_until=timezone.now() + timedelta(days=30),
    )
    client.force_login(owner)
    body = client.get(
        reverse("approvals:impact"),
        {"workload": read_workload.slug, "tools": ["send-email", "crm-api"]},
    ).content.decode()
    assert "Forbidden by rule" in body and "No CRM mail-out" in body
    assert "replace the existing grants of: crm-api" in body
    assert re.search(r"reader holds crm-api \(until \d{4}-\d\d-\d\d\)\.", body)
    other = client.get(reverse("approvals:impact"), {"workload": read_workload.slug})
    assert "reader holds crm-api" in other.content.decode()  # before any tool is picked


def test_the_impact_preview_says_what_an_empty_duration_means(
    client, owner, read_workload, boundary_workload
):
    client.force_login(owner)
    url = reverse("approvals:impact")
    lax = client.get(url, {"workload": read_workload.slug, "tools": ["crm-api"]}).content.decode()
    assert "Longest grant: 180 days." in lax
    assert "With no duration or end date, the grant lasts that long." in lax
    strict = client.get(url, {"workload": boundary_workload.slug}).content.decode()
    assert "The Boundary crossing tier requires an end date or a duration." in strict


def test_filing_from_the_form_redirects_to_the_request(client, owner, boundary_workload):
    client.force_login(owner)
    response = client.post(
        reverse("approvals:new"),
        {
            "workload": boundary_workload.slug,
            "kind": "tools",
            "tools": TRIFECTA,
            "justification": "Analyse datasets.",
            "duration_days": 14,
        },
    )
    req = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("approvals:detail", args=[req.pk])


def test_form_errors_come_back_as_the_form_fragment_with_422(client, owner, boundary_workload):
    client.force_login(owner)
    response = client.post(
        reverse("approvals:new"),
        {
            "workload": boundary_workload.slug,
            "kind": "tools",
            "tools": ["crm-api"],
            "justification": "No end.",
        },
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 422
    assert 'id="request-form"' in body and "<html" not in body
    assert "requires an end date" in body
    assert not AccessRequest.objects.exists()


def test_an_htmx_filing_answers_with_hx_redirect(client, owner, read_workload):
    client.force_login(owner)
    response = client.post(
        reverse("approvals:new"),
        {
            "workload": read_workload.slug,
            "kind": "tools",
            "tools": ["crm-api"],
            "justification": "Go.",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/requests/")


def test_an_inline_approval_answers_with_the_updated_row(client, approver, read_workload, owner):
    req = file_request(read_workload, owner)
    client.force_login(approver)
    response = client.post(
        reverse("approvals:decide", args=[req.pk]),
        {"verdict": "approve", "comment": "ok", "from": "queue"},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="request-{req.pk}"' in body and "Approved" in body and "<html" not in body
    assert Entitlement.objects.filter(request=req).exists()


def test_a_late_inline_decision_shows_the_conflict_in_the_row(
    client, approver, approver2, read_workload, owner
):
    req = file_request(read_workload, owner)
    services.access_request_approve(access_request=req, by=approver2)
    client.force_login(approver)
    response = client.post(
        reverse("approvals:decide", args=[req.pk]),
        {"verdict": "deny", "comment": "late", "from": "queue"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422  # swapped into the row by mandate.js
    assert "already approved" in response.content.decode()


def _button(body: str, verdict: str) -> str:
    return re.search(rf'<button[^>]*value="{verdict}"[^>]*>', body).group(0)


def test_an_iam_admin_can_deny_an_exception_request_without_a_justification(
    client, admin_user, owner, boundary_workload
):
    req = file_request(boundary_workload, owner, TRIFECTA)
    client.force_login(admin_user)
    body = client.get(reverse("approvals:detail", args=[req.pk])).content.decode()
    assert re.search(r'<textarea name="justification"[^>]*required', body)
    assert "formnovalidate" in _button(body, "deny")
    assert "formnovalidate" not in _button(body, "approve")

    client.post(reverse("approvals:decide", args=[req.pk]), {"verdict": "deny", "comment": "No."})
    req.refresh_from_db()
    assert req.status == "denied"


def test_the_server_still_wants_the_exception_justification_to_approve(
    client, admin_user, owner, boundary_workload
):
    req = file_request(boundary_workload, owner, TRIFECTA)
    client.force_login(admin_user)
    response = client.post(
        reverse("approvals:decide", args=[req.pk]), {"verdict": "approve"}, follow=True
    )
    assert "Write the justification for the exception." in response.content.decode()
    assert not req.decisions.exists()


def test_the_server_refuses_a_forged_approval_by_the_owner(client, owner, read_workload):
    req = file_request(read_workload, owner)
    client.force_login(owner)
    response = client.post(reverse("approvals:decide", args=[req.pk]), {"verdict": "approve"})
    assert response.status_code == 403
    assert not ApprovalDecision.objects.exists()


def test_an_owner_who_is_also_an_approver_is_refused_and_audited(
    client, owner, approver, read_workload
):
    owner.groups.add(*approver.groups.all())
    req = file_request(read_workload, owner)
    client.force_login(owner)
    response = client.post(reverse("approvals:decide", args=[req.pk]), {"verdict": "approve"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="request.decision_refused").exists()


def test_bulk_approval_skips_requests_that_need_an_exception(
    client, admin_user, owner, read_workload, boundary_workload
):
    simple = file_request(read_workload, owner)
    risky = file_request(boundary_workload, owner, TRIFECTA)
    client.force_login(admin_user)
    response = client.post(
        reverse("approvals:bulk"), {"verdict": "approve", "ids": [simple.pk, risky.pk]}
    )
    assert response.status_code == 302
    simple.refresh_from_db()
    risky.refresh_from_db()
    assert simple.status == "approved"
    assert risky.status == "pending" and not risky.decisions.exists()


def test_bulk_denial_needs_a_comment(client, approver, owner, read_workload):
    req = file_request(read_workload, owner)
    client.force_login(approver)
    client.post(reverse("approvals:bulk"), {"verdict": "deny", "ids": [req.pk]})
    req.refresh_from_db()
    assert req.status == "pending"
    client.post(reverse("approvals:bulk"), {"verdict": "deny", "ids": [req.pk], "comment": "No."})
    req.refresh_from_db()
    assert req.status == "denied"


def flashed(response):
    """The messages shown on the page a decision redirects to (read, so not shown again)."""
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def test_the_first_of_two_approvals_says_it_is_recorded_not_granted(
    client, approver, approver2, owner, boundary_workload
):
    req = file_request(boundary_workload, owner)
    decide = reverse("approvals:decide", args=[req.pk])
    client.force_login(approver)
    first = client.post(decide, {"verdict": "approve"}, follow=True)
    assert flashed(first) == [
        ("success", f"Your approval of request #{req.pk} is recorded; 1 more approval needed.")
    ]
    client.force_login(approver2)
    second = client.post(decide, {"verdict": "approve"}, follow=True)
    assert flashed(second) == [("success", f"Request #{req.pk} approved and granted.")]


def test_a_denial_says_denied(client, approver, owner, read_workload):
    req = file_request(read_workload, owner)
    client.force_login(approver)
    response = client.post(
        reverse("approvals:decide", args=[req.pk]),
        {"verdict": "deny", "comment": "No."},
        follow=True,
    )
    assert flashed(response) == [("success", f"Request #{req.pk} denied.")]


def test_a_bulk_denial_without_a_comment_denies_nothing_and_says_so_as_an_error(
    client, approver, owner, read_workload
):
    req = file_request(read_workload, owner)
    client.force_login(approver)
    response = client.post(
        reverse("approvals:bulk"), {"verdict": "deny", "ids": [req.pk]}, follow=True
    )
    assert flashed(response) == [("error", "Nothing denied: write a comment saying why.")]
    req.refresh_from_db()
    assert req.status == "pending"


def test_bulk_messages_count_what_was_granted_denied_or_only_recorded(
    client, approver, owner, read_workload, boundary_workload
):
    one_step = file_request(read_workload, owner)
    two_steps = file_request(boundary_workload, owner)
    client.force_login(approver)
    approved = client.post(
        reverse("approvals:bulk"),
        {"verdict": "approve", "ids": [one_step.pk, two_steps.pk]},
        follow=True,
    )
    assert flashed(approved) == [
        ("success", "Approved and granted 1 request."),
        (
            "success",
            "Recorded your approval on 1 request; more approvals are needed before granting.",
        ),
    ]
    again = client.post(
        reverse("approvals:bulk"), {"verdict": "approve", "ids": [two_steps.pk]}, follow=True
    )
    assert flashed(again)[0] == ("warning", "No request was approved.")
    denied = client.post(
        reverse("approvals:bulk"),
        {"verdict": "deny", "ids": [two_steps.pk], "comment": "No."},
        follow=True,
    )
    assert flashed(denied)[0] == ("warning", "No request was denied.")  # already approved once


def test_the_owner_cancels_a_pending_request(client, owner, read_workload):
    req = file_request(read_workload, owner)
    client.force_login(owner)
    client.post(reverse("approvals:cancel", args=[req.pk]), {"reason": "Not needed"})
    req.refresh_from_db()
    assert req.status == "cancelled" and req.decision_reason == "Not needed"


def test_the_workload_page_lists_grants_with_history_and_lets_the_owner_revoke(
    client, owner, approver, read_workload
):
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    client.force_login(owner)
    page = client.get(reverse("workloads:detail", args=[read_workload.slug])).content.decode()
    assert "CRM API" in page and reverse("approvals:grant_revoke", args=[grant.pk]) in page
    response = client.post(reverse("approvals:grant_revoke", args=[grant.pk]), {"reason": "Unused"})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.revoke_reason == "Unused"
    page = client.get(reverse("workloads:detail", args=[read_workload.slug])).content.decode()
    assert "revoked" in page and "Unused" in page


def test_an_approver_may_not_revoke_a_grant(client, approver, read_workload):
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    client.force_login(approver)
    response = client.post(reverse("approvals:grant_revoke", args=[grant.pk]), {"reason": "x"})
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.status == "active"


def test_the_owners_revoke_form_posts_through_htmx_so_it_asks_to_confirm(
    client, owner, read_workload
):
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    client.force_login(owner)
    page = client.get(reverse("workloads:detail", args=[read_workload.slug])).content.decode()
    form = page.split(f'<form id="owner-revoke-{grant.pk}"')[1].split("</form>")[0]
    # hx-confirm asks only on an htmx request: on a plain form it never did.
    assert f'hx-post="{reverse("approvals:grant_revoke", args=[grant.pk])}"' in form
    assert 'hx-confirm="Revoke this grant? The workload loses the tool at once."' in form


def test_an_htmx_revoke_by_the_owner_reloads_the_workload_page(client, owner, read_workload):
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    client.force_login(owner)
    url = reverse("approvals:grant_revoke", args=[grant.pk])
    response = client.post(url, {"reason": "Unused"}, headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == reverse("workloads:detail", args=[read_workload.slug])
    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.revoke_reason == "Unused"


def test_an_htmx_revoke_without_a_reason_shows_the_error_in_the_form(client, owner, read_workload):
    grant = EntitlementFactory(workload=read_workload, tool=Tool.objects.get(slug="crm-api"))
    client.force_login(owner)
    url = reverse("approvals:grant_revoke", args=[grant.pk])
    response = client.post(url, {"reason": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == f"#owner-revoke-{grant.pk}"
    assert "Say why the grant is revoked." in response.content.decode()
    grant.refresh_from_db()
    assert grant.status == "active"


def _window_row(body: str, label: str) -> list[str]:
    table = body[body.index('data-testid="window-comparison"') :].split("</table>", 1)[0]
    row = table[table.index(label) :].split("</tr>", 1)[0]
    return re.findall(r'<td class="num">(\d+)', row)


def test_the_window_preview_shows_the_limits_now_the_default_and_the_most_allowed(
    client, owner, read_workload
):
    client.force_login(owner)
    body = client.get(
        reverse("approvals:impact"), {"workload": read_workload.slug, "kind": "session_window"}
    ).content.decode()
    seconds = read_workload.tier.max_session_seconds
    assert _window_row(body, "Inference window") == [str(seconds), str(seconds), str(seconds * 10)]
    assert "No combination rule tripped" not in body  # rules are about tools
    tools = client.get(reverse("approvals:impact"), {"workload": read_workload.slug})
    assert "window-comparison" not in tools.content.decode()


def test_the_approver_sees_the_ask_beside_the_limits_and_one_past_the_ceiling(
    client, approver, owner, admin_user, read_workload
):
    req = services.access_request_create(
        by=owner,
        workload=read_workload,
        kind="session_window",
        justification="Month-end runs are long.",
        session_limits={"max_session_seconds": 5000},
        duration_days=5,
    )
    client.force_login(approver)
    body = client.get(reverse("approvals:detail", args=[req.pk])).content.decode()
    assert _window_row(body, "Inference window") == ["5000", "900", "900", "9000"]
    assert (
        "Tool calls" not in body.split('data-testid="window-comparison"', 1)[1].split("</table>")[0]
    )
    assert "cannot be approved" not in body

    from workloads.services import workload_classify

    workload_classify(
        workload=read_workload, tier=tier("generation-only"), by=admin_user, rationale="Writes."
    )
    body = client.get(reverse("approvals:detail", args=[req.pk])).content.decode()
    assert "above the most a window allows: it cannot be approved" in body


def test_an_approved_session_run_shows_the_session_approval_it_granted(
    client, owner, reviewer, approver
):
    from governance.findings.services import containment_apply
    from governance.models import Finding
    from tests.evaluation.rows import make_session
    from workloads.models import SessionApproval

    workload = ClassifiedWorkloadFactory(owner=owner, slug="gated")
    finding = Finding.objects.create(
        kind="intent_drift",
        severity="medium",
        workload=workload,
        session=make_session(workload),
        summary="The final action strayed from the request.",
        dedupe_key="gate",
        occurred_at=timezone.now(),
    )
    containment_apply(finding=finding, action="gate_sessions", by=reviewer, reason="Drifted")
    workload.refresh_from_db()
    req = services.access_request_create(
        by=owner,
        workload=workload,
        kind=AccessRequest.Kind.SESSION_RUN,
        session="nightly-run-7",
        justification="The nightly run, with the fix.",
    )
    services.access_request_approve(access_request=req, by=approver)
    approval = SessionApproval.objects.get(request=req)

    client.force_login(owner)
    page = client.get(reverse("approvals:detail", args=[req.pk])).content.decode()
    granted = page[page.index("<h2>Granted</h2>") :]
    assert "nightly-run-7" in granted
    assert "active" in granted
    assert timezone.localtime(approval.valid_from).strftime("%Y-%m-%d %H:%M") in granted
    assert timezone.localtime(approval.valid_until).strftime("%Y-%m-%d %H:%M") in granted


def test_the_form_refuses_what_a_pending_request_already_asks_for(client, owner, read_workload):
    first = file_request(read_workload, owner, ["crm-api"])
    client.force_login(owner)
    response = client.post(
        reverse("approvals:new"),
        {
            "workload": read_workload.slug,
            "kind": "tools",
            "tools": ["crm-api"],
            "justification": "Again.",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert f"Request #{first.pk} already asks for this" in response.content.decode()
    assert AccessRequest.objects.count() == 1
