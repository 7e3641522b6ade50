from datetime import timedelta

import pytest
from django.urls import reverse

from governance.models import AuditEvent
from tests.factories import (
    ClassifiedWorkloadFactory,
    EntitlementFactory,
    ToolFactory,
    UserFactory,
    WorkloadFactory,
    tier,
)
from workloads.models import Entitlement, SessionPolicy, Tool, Workload

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def _slugs(response) -> set[str]:
    return {w.slug for w in response.context["page"]}


# --- list ---------------------------------------------------------------------------


def test_the_list_filters_by_tier_status_owner_and_classification(admin_client, owner):
    act = ClassifiedWorkloadFactory(slug="acting", owner=owner)
    ClassifiedWorkloadFactory(slug="reading", tier=tier("internal-read"))
    draft = WorkloadFactory(slug="drafty")
    url = reverse("workloads:list")
    assert _slugs(admin_client.get(url, {"tier": "internal-act"})) == {act.slug}
    assert _slugs(admin_client.get(url, {"status": "draft"})) == {draft.slug}
    assert _slugs(admin_client.get(url, {"owner": owner.username})) == {act.slug}
    assert _slugs(admin_client.get(url, {"unclassified": "true"})) == {draft.slug}
    assert _slugs(admin_client.get(url, {"q": "read"})) == {"reading"}


def test_the_list_sorts_and_paginates_keeping_the_filters(admin_client):
    for n in range(30):
        WorkloadFactory(slug=f"w-{n:02}", name=f"Workload {n:02}")
    response = admin_client.get(reverse("workloads:list"), {"ordering": "-created", "q": "w-"})
    page = response.context["page"]
    assert page.paginator.count == 30 and len(page) == 25
    assert page[0].slug == "w-29"
    assert "?ordering=-created&amp;q=w-&amp;page=2" in response.content.decode()


def test_an_htmx_filter_request_gets_only_the_table(admin_client):
    WorkloadFactory(slug="only-one")
    response = admin_client.get(
        reverse("workloads:list"), {"q": "only"}, headers={**HX, "HX-Target": "workload-table"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="workload-table">')
    assert "<html" not in body and "only-one" in body


def test_an_owner_lists_only_their_own_workloads(owner_client, owner):
    ClassifiedWorkloadFactory(slug="mine", owner=owner)
    ClassifiedWorkloadFactory(slug="theirs")
    assert _slugs(owner_client.get(reverse("workloads:list"))) == {"mine"}


def test_an_owner_gets_404_for_someone_elses_workload(owner_client):
    other = ClassifiedWorkloadFactory()
    assert owner_client.get(reverse("workloads:detail", args=[other.slug])).status_code == 404


# --- register -------------------------------------------------------------------------

REGISTRATION = {
    "slug": "ticket-triage",
    "name": "Ticket triage",
    "purpose": "Triage support tickets.",
    "model_family": "o1",
    "environment": "production",
    "data_categories": "customer, support",
}


def test_an_owner_registers_for_themself_even_if_they_name_someone_else(owner_client, owner):
    someone = UserFactory(username="someone")
    response = owner_client.post(
        reverse("workloads:register"), {**REGISTRATION, "owner": someone.username}
    )
    assert response.status_code == 303
    workload = Workload.objects.get(slug="ticket-triage")
    assert workload.owner == owner
    assert workload.data_categories == ["customer", "support"]
    assert workload.status == Workload.Status.DRAFT


def test_an_owner_sees_no_owner_field_but_an_iam_admin_does(owner_client, client, admin_user):
    assert "owner" not in owner_client.get(reverse("workloads:register")).context["form"].fields
    client.force_login(admin_user)
    assert "owner" in client.get(reverse("workloads:register")).context["form"].fields


def test_an_iam_admin_may_register_for_an_owner(admin_client, owner):
    admin_client.post(reverse("workloads:register"), {**REGISTRATION, "owner": owner.username})
    assert Workload.objects.get(slug="ticket-triage").owner == owner


def test_an_iam_admin_may_not_make_an_approver_an_owner(admin_client, approver):
    """Whoever registers, the owner must be someone who may own workloads (request their
    tools): the same rule a token meets."""
    response = admin_client.post(
        reverse("workloads:register"), {**REGISTRATION, "owner": approver.username}
    )
    assert response.status_code == 422
    assert "may not own workloads" in str(response.context["form"].errors["owner"])
    assert not Workload.objects.filter(slug="ticket-triage").exists()


def test_a_bad_slug_gets_one_message_that_says_what_is_allowed(owner_client):
    for slug in ("Bad Slug!", "billing.bot", "double--dash"):
        bad = owner_client.post(reverse("workloads:register"), {**REGISTRATION, "slug": slug})
        assert bad.context["form"].errors["slug"] == [
            "Use lowercase letters and digits, with single - or _ between them."
        ]
    good = owner_client.post(reverse("workloads:register"), {**REGISTRATION, "slug": "bill_bot-2"})
    assert good.status_code == 303


def test_a_duplicate_slug_is_shown_on_the_slug_field_with_422(admin_client):
    WorkloadFactory(slug="ticket-triage")
    response = admin_client.post(reverse("workloads:register"), REGISTRATION, headers=HX)
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#register-form"
    assert response.context["form"].errors["slug"]
    assert "exists" in response.content.decode()


# --- classify -----------------------------------------------------------------------------


def test_an_iam_admin_classifies_in_place_and_it_is_audited(admin_client, admin_user):
    workload = WorkloadFactory()
    response = admin_client.post(
        reverse("workloads:classify", args=[workload.slug]),
        {"tier": "internal-read", "rationale": "Reads the wiki."},
        headers={**HX, "HX-Target": "workload-detail"},
    )
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="workload-detail">')
    workload.refresh_from_db()
    assert workload.tier.slug == "internal-read" and workload.classified_by == admin_user
    assert AuditEvent.objects.filter(action="workload.classify", object_id=workload.pk).exists()


def test_classifying_without_a_rationale_shows_the_error_in_place(admin_client):
    workload = WorkloadFactory()
    response = admin_client.post(
        reverse("workloads:classify", args=[workload.slug]),
        {"tier": "internal-read", "rationale": " "},
        headers=HX,
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#classify-form"
    assert 'id="classify-form"' in response.content.decode()
    workload.refresh_from_db()
    assert workload.tier is None


def test_an_owner_sees_no_classify_control_and_a_forged_post_is_refused(owner_client, owner):
    workload = WorkloadFactory(owner=owner)
    page = owner_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert 'id="classify-form"' not in page
    assert reverse("workloads:classify", args=[workload.slug]) not in page
    response = owner_client.post(
        reverse("workloads:classify", args=[workload.slug]),
        {"tier": "generation-only", "rationale": "I say so."},
    )
    assert response.status_code == 403
    workload.refresh_from_db()
    assert workload.tier is None
    assert not AuditEvent.objects.filter(action="workload.classify").exists()


# --- status -------------------------------------------------------------------------------


def test_activating_an_unclassified_workload_explains_why_not(admin_client):
    workload = WorkloadFactory()
    response = admin_client.post(
        reverse("workloads:status", args=[workload.slug]), {"status": "active"}, headers=HX
    )
    assert response.status_code == 422
    assert "Classify the workload before activating it." in response.content.decode()
    workload.refresh_from_db()
    assert workload.status == Workload.Status.DRAFT


def test_a_classified_draft_says_decisions_deny_until_it_is_activated(admin_client):
    workload = ClassifiedWorkloadFactory(status=Workload.Status.DRAFT)
    url = reverse("workloads:detail", args=[workload.slug])
    assert 'id="activation-notice"' in admin_client.get(url).content.decode()
    admin_client.post(reverse("workloads:status", args=[workload.slug]), {"status": "active"})
    assert 'id="activation-notice"' not in admin_client.get(url).content.decode()


def test_suspend_and_reinstate_go_through_the_service(admin_client):
    workload = ClassifiedWorkloadFactory()
    url = reverse("workloads:status", args=[workload.slug])
    page = admin_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert "hx-confirm=" in page and ">Suspend<" in page
    assert 'name="reason" required' in page
    unexplained = admin_client.post(url, {"status": "suspended"}, headers=HX)
    assert unexplained.status_code == 422 and "Say why." in unexplained.content.decode()
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE
    admin_client.post(url, {"status": "suspended", "reason": "Leaking tickets"})
    workload.refresh_from_db()
    assert workload.status == Workload.Status.SUSPENDED
    page = admin_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert ">Reinstate<" in page
    admin_client.post(url, {"status": "active", "reason": "Fixed the prompt"})
    workload.refresh_from_db()
    assert workload.status == Workload.Status.ACTIVE
    reasons = AuditEvent.objects.filter(action__in=["workload.suspended", "workload.active"])
    assert sorted(e.after["reason"] for e in reasons) == ["Fixed the prompt", "Leaking tickets"]


# --- session policy -----------------------------------------------------------------------


def test_the_detail_shows_each_tier_default_beside_the_value_in_force(admin_client):
    workload = ClassifiedWorkloadFactory()
    SessionPolicy.objects.filter(workload=workload).update(max_tool_calls=7)
    rows = {
        r["name"]: r
        for r in admin_client.get(reverse("workloads:detail", args=[workload.slug])).context[
            "policy_rows"
        ]
    }
    assert rows["max_tool_calls"]["effective"] == 7
    assert rows["max_tool_calls"]["default"] == tier("internal-act").max_tool_calls
    assert rows["max_session_seconds"]["effective"] == tier("internal-act").max_session_seconds


def test_a_policy_above_the_tier_ceiling_is_a_422_field_error(admin_client):
    workload = ClassifiedWorkloadFactory()
    response = admin_client.post(
        reverse("workloads:session_policy", args=[workload.slug]),
        {"max_tool_calls": "100000"},
        headers=HX,
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#policy"
    assert "allows at most" in response.content.decode()
    assert SessionPolicy.objects.get(workload=workload).max_tool_calls is None


def test_an_iam_admin_tightens_the_session_policy(admin_client):
    workload = ClassifiedWorkloadFactory()
    response = admin_client.post(
        reverse("workloads:session_policy", args=[workload.slug]),
        {"max_tool_calls": "12", "logging_level": "full_trace"},
    )
    assert response.status_code == 303
    policy = SessionPolicy.objects.get(workload=workload)
    assert policy.max_tool_calls == 12 and policy.max_session_seconds is None
    assert AuditEvent.objects.filter(action="session_policy.update").exists()


def test_the_policy_says_when_new_limits_hold_and_links_to_the_earlier_ones(admin_client):
    workload = ClassifiedWorkloadFactory()
    admin_client.post(
        reverse("workloads:session_policy", args=[workload.slug]), {"max_tool_calls": "12"}
    )
    page = admin_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    note = page[page.index('data-testid="limits-apply-from"') :].split("</p>", 1)[0]
    assert "from the moment they are saved" in note
    link = note.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    changes = admin_client.get(link).content.decode()
    assert "session_policy.update" in changes and "max_tool_calls" in changes


# --- grants ---------------------------------------------------------------------------------


def test_a_grant_that_trips_a_combination_rule_names_the_rule(admin_client):
    workload = ClassifiedWorkloadFactory()
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="web-search"))
    EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="file-read"))
    response = admin_client.post(
        reverse("workloads:grant", args=[workload.slug]),
        {"tool": "code-exec", "reason": "Runs the analyses."},
        headers=HX,
    )
    assert response.status_code == 422
    assert "Lethal trifecta (lethal-trifecta)" in response.content.decode()
    assert not workload.entitlements.filter(tool__slug="code-exec").exists()


def test_an_iam_admin_cannot_grant_a_tool_to_a_workload_they_own(admin_client, admin_user):
    """Separation of duties: an owner's tools come through a request others approve."""
    workload = ClassifiedWorkloadFactory(owner=admin_user)
    tool = ToolFactory()
    response = admin_client.post(
        reverse("workloads:grant", args=[workload.slug]),
        {"tool": tool.slug, "reason": "Needs it."},
        headers=HX,
    )
    assert response.status_code == 422
    assert "You own this workload" in response.content.decode()
    assert not workload.entitlements.exists()


def test_the_direct_grant_form_says_what_an_empty_end_means(admin_client):
    lax = ClassifiedWorkloadFactory(tier=tier("internal-act"))
    page = admin_client.get(reverse("workloads:detail", args=[lax.slug])).content.decode()
    assert "At most 90 days; empty: 90 days, the Internal act tier&#x27;s longest." in page
    assert "until revoked" not in page
    strict = ClassifiedWorkloadFactory(tier=tier("boundary-crossing"))
    page = admin_client.get(reverse("workloads:detail", args=[strict.slug])).content.decode()
    assert "Required in the Boundary crossing tier; at most 30 days." in page

    admin_client.post(
        reverse("workloads:grant", args=[lax.slug]), {"tool": "crm-api", "reason": "Tickets."}
    )
    grant = lax.entitlements.get()
    assert grant.valid_until - grant.valid_from == timedelta(days=90)


def test_an_iam_admin_grants_and_revokes_with_a_reason(admin_client):
    workload = ClassifiedWorkloadFactory()
    tool = ToolFactory()
    url = reverse("workloads:grant", args=[workload.slug])
    refused = admin_client.post(url, {"tool": tool.slug}, headers=HX)
    assert refused.status_code == 422 and "This field is required." in refused.content.decode()
    assert not workload.entitlements.exists()
    admin_client.post(url, {"tool": tool.slug, "reason": "Reads the CRM for the agents."})
    grant = workload.entitlements.get(tool=tool)
    granted = AuditEvent.objects.get(action="grant.create", object_id=str(grant.pk))
    assert granted.after["reason"] == "Reads the CRM for the agents."
    url = reverse("workloads:grant_revoke", args=[workload.slug, grant.pk])
    page = admin_client.get(reverse("workloads:detail", args=[workload.slug])).content.decode()
    assert f'id="revoke-{grant.pk}"' in page and "hx-confirm" in page

    response = admin_client.post(url, {f"revoke-{grant.pk}-reason": ""}, headers=HX)
    assert response.status_code == 422 and response["HX-Retarget"] == f"#revoke-{grant.pk}"

    admin_client.post(url, {f"revoke-{grant.pk}-reason": "No longer needed"})
    grant.refresh_from_db()
    assert grant.status == Entitlement.Status.REVOKED
    assert grant.revoke_reason == "No longer needed"
    history = admin_client.get(reverse("workloads:detail", args=[workload.slug]))
    assert grant in history.context["past_grants"]


def test_the_audit_trail_on_the_detail_is_paginated(admin_client, admin_user):
    workload = ClassifiedWorkloadFactory()
    from workloads import services

    for n in range(12):
        services.workload_update(workload=workload, by=admin_user, name=f"Name {n}")
    url = reverse("workloads:detail", args=[workload.slug])
    first = admin_client.get(url).context["audit_page"]
    assert first.paginator.count == 12 and len(first) == 10
    fragment = admin_client.get(
        url, {"audit_page": 2}, headers={**HX, "HX-Target": "audit-trail"}
    ).content.decode()
    assert fragment.lstrip().startswith('<section id="audit-trail"')
    assert "Name 0" in fragment and "Name 11" not in fragment
