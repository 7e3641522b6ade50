from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from governance.errors import DomainError, RuleViolation
from governance.forms import form_add_service_error
from governance.models import AuditEvent, ServiceToken
from governance.tokens import service_token_lookup
from tests.factories import ClassifiedWorkloadFactory, WorkloadFactory, tier
from workloads import services
from workloads.forms import GrantForm

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def _actions(response) -> list[str]:
    return [e.action for e in response.context["page"]]


def test_the_audit_log_filters_by_actor_action_object_and_date(client, auditor, admin_user):
    workload = WorkloadFactory()
    # Audit rows are append-only, so the older event is written in the past.
    with time_machine.travel(timezone.now() - timedelta(days=3), tick=False):
        services.workload_update(workload=workload, by=admin_user, name="Renamed")
    services.workload_classify(workload=workload, tier=tier(), by=admin_user, rationale="Reads.")
    client.force_login(auditor)
    url = reverse("audit:log")
    assert set(_actions(client.get(url, {"actor": admin_user.username}))) == {
        "workload.update",
        "workload.classify",
    }
    assert _actions(client.get(url, {"action": "workload.classify"})) == ["workload.classify"]
    assert len(_actions(client.get(url, {"object_type": "workloads.workload"}))) == 2
    assert _actions(client.get(url, {"object_id": "0"})) == []
    today = timezone.localdate().isoformat()
    assert _actions(client.get(url, {"since": today, "actor": admin_user.username})) == [
        "workload.classify"
    ]
    earlier = (timezone.localdate() - timedelta(days=2)).isoformat()
    assert _actions(client.get(url, {"until": earlier})) == ["workload.update"]


def test_the_unfiltered_audit_log_shows_the_newest_events_first(client, auditor, admin_user):
    first, second = WorkloadFactory(), WorkloadFactory()
    services.workload_classify(workload=first, tier=tier(), by=admin_user, rationale="One.")
    services.workload_classify(workload=second, tier=tier(), by=admin_user, rationale="Two.")
    client.force_login(auditor)
    events = list(client.get(reverse("audit:log")).context["page"])
    assert [e.object_id for e in events] == [str(second.pk), str(first.pk)]


def test_the_audit_log_pages_older_by_id_without_counting_the_log(
    client, auditor, admin_user, django_assert_max_num_queries
):
    workloads = WorkloadFactory.create_batch(55)
    for workload in workloads:
        services.workload_update(workload=workload, by=admin_user, name=f"Renamed {workload.pk}")
    client.force_login(auditor)
    url = reverse("audit:log")
    first = client.get(url, {"action": "workload.update"}).context["page"]
    assert len(first) == 50
    with django_assert_max_num_queries(6) as captured:
        second = client.get(url, {"action": "workload.update", "before": first.older})
    assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
    rest = second.context["page"]
    assert [e.object_id for e in rest] == [str(w.pk) for w in workloads[:5]][::-1]
    assert rest.older is None and rest.newer
    assert "action=workload.update&amp;after=" in second.content.decode()


@pytest.mark.parametrize("cursor", ["\N{SUPERSCRIPT TWO}", "1" * 30])
def test_a_crafted_audit_page_link_shows_the_newest_page_not_a_500(client, auditor, cursor):
    client.force_login(auditor)
    for key in ("before", "after"):
        response = client.get(reverse("audit:log"), {key: cursor})
        assert response.status_code == 200
        assert response.context["page"].refused_cursor


def test_an_invalid_date_filter_matches_nothing_and_says_why(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit:log"), {"since": "yesterday"})
    assert list(response.context["page"]) == []
    assert "Enter a valid date" in response.content.decode()


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"until": "9999-12-31"}, "less than or equal to 9998-12-31"),
        ({"since": "0001-01-01"}, "greater than or equal to 1900-01-01"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "To is before From"),
    ],
)
def test_an_out_of_range_or_reversed_date_range_is_a_field_error_not_a_500(
    client, auditor, filters, error
):
    client.force_login(auditor)
    response = client.get(reverse("audit:log"), filters)
    assert response.status_code == 200 and list(response.context["page"]) == []
    assert error in response.content.decode()


def test_a_token_secret_is_shown_once_and_only_its_hash_is_kept(admin_client):
    workload = ClassifiedWorkloadFactory(slug="bound-one")
    response = admin_client.post(
        reverse("tokens:create"),
        {"name": "gateway", "scopes": ["decide", "ingest"], "workloads": "bound-one"},
        headers=HX,
    )
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    secret = response.context["issued"].secret
    assert secret in response.content.decode()
    token = ServiceToken.objects.get(name="gateway")
    assert list(token.workloads.all()) == [workload] and token.scopes == ["decide", "ingest"]
    assert service_token_lookup(secret) == token
    listing = admin_client.get(reverse("tokens:list")).content.decode()
    assert token.prefix in listing and secret not in listing


def test_a_token_must_be_bound_or_explicitly_unbound(admin_client):
    response = admin_client.post(
        reverse("tokens:create"), {"name": "loose", "scopes": ["read"]}, headers=HX
    )
    assert response.status_code == 422 and response["HX-Retarget"] == "#token-form"
    assert "Bind at least one workload" in response.content.decode()
    assert not ServiceToken.objects.exists()


def test_a_duplicate_token_name_is_shown_on_the_name_field(admin_client):
    data = {"name": "dup", "scopes": ["read"], "all_workloads": "on"}
    admin_client.post(reverse("tokens:create"), data)
    response = admin_client.post(reverse("tokens:create"), data)
    assert response.status_code == 422
    assert response.context["form"].errors["name"] == ["A token with this name exists."]


def test_revoking_a_token_stops_it_working(admin_client):
    admin_client.post(
        reverse("tokens:create"), {"name": "t", "scopes": ["read"], "all_workloads": "on"}
    )
    token = ServiceToken.objects.get(name="t")
    page = admin_client.get(reverse("tokens:list")).content.decode()
    assert "hx-confirm=" in page
    admin_client.post(reverse("tokens:revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke").exists()


def test_a_domain_error_lands_on_its_field_or_on_the_form():
    form = GrantForm({"tool": ""})
    form.is_valid()
    form_add_service_error(form, DomainError("Too long.", field="valid_until"))
    form_add_service_error(
        form, RuleViolation("Blocked by rule Lethal trifecta (lethal-trifecta).")
    )
    form_add_service_error(form, DomainError("Elsewhere.", field="not_on_this_form"))
    assert form.errors["valid_until"] == ["Too long."]
    assert form.non_field_errors() == [
        "Blocked by rule Lethal trifecta (lethal-trifecta).",
        "Elsewhere.",
    ]


def test_a_new_token_expires_after_the_default_days_unless_the_field_is_emptied(
    admin_client, settings
):
    settings.SERVICE_TOKEN_DEFAULT_DAYS = 30
    ClassifiedWorkloadFactory(slug="bound-one")
    moment = timezone.now().replace(second=30, microsecond=0)
    in_30_days = moment.replace(second=0) + timedelta(days=30)
    with time_machine.travel(moment, tick=False):
        form = admin_client.get(reverse("tokens:list")).context["form"]
        typed = form["expires_at"].value()  # what the browser shows and sends back unchanged
        assert typed == in_30_days.replace(tzinfo=None)
        data = {"scopes": ["decide"], "workloads": "bound-one"}
        admin_client.post(reverse("tokens:create"), data | {"name": "rotated", "expires_at": typed})
        admin_client.post(reverse("tokens:create"), data | {"name": "forever", "expires_at": ""})
    assert ServiceToken.objects.get(name="rotated").expires_at == in_30_days
    assert ServiceToken.objects.get(name="forever").expires_at is None


def test_the_token_list_warns_of_tokens_about_to_expire(admin_client, settings):
    settings.TOKEN_EXPIRY_WARNING_DAYS = 14
    now = timezone.now()
    for name, days in (("soon", 3), ("later", 40)):
        ServiceToken.objects.create(
            name=name,
            prefix=name,
            token_hash=name.ljust(64, "0"),
            scopes=["read"],
            expires_at=now + timedelta(days=days, minutes=1),
        )
    page = admin_client.get(reverse("tokens:list")).content.decode()
    assert page.count("Expires in") == 1 and "Expires in 3\xa0days" in page


def test_the_audit_log_names_a_finding_and_its_choices_by_their_labels(client, auditor, reviewer):
    from governance.findings import services as finding_services
    from tests.findings.api_rows import make_finding

    finding = make_finding(ClassifiedWorkloadFactory(), kind="forbidden_combination")
    finding_services.finding_set_status(finding=finding, status="acknowledged", by=reviewer)
    client.force_login(auditor)
    html = client.get(reverse("audit:log"), {"action": "finding.acknowledged"}).content.decode()
    assert f"<td>Forbidden tool combination #{finding.pk}<div" in html
    assert "forbidden_combination #" not in html
    assert "Acknowledged" in html.split('class="audit"')[1]
