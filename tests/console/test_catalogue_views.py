from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import AuditEvent
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory
from workloads.models import CombinationRule, RuleException, Tool

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}

TOOL = {"slug": "jira", "name": "Jira", "capability_class": "downstream_api", "risk": "medium"}


def test_an_iam_admin_creates_a_tool_and_it_is_audited(admin_client):
    response = admin_client.post(reverse("workloads:tool_create"), TOOL, headers=HX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("workloads:tools")
    assert Tool.objects.filter(slug="jira", capability_class="downstream_api").exists()
    assert AuditEvent.objects.filter(action="tool.create").exists()


def test_a_duplicate_tool_slug_is_a_field_error(admin_client):
    response = admin_client.post(reverse("workloads:tool_create"), {**TOOL, "slug": "web-search"})
    assert response.status_code == 422
    assert response.context["form"].errors["slug"]


def test_editing_a_tool_keeps_its_slug(admin_client):
    url = reverse("workloads:tool_edit", args=["web-search"])
    admin_client.post(url, {**TOOL, "slug": "renamed", "name": "Search the web"})
    tool = Tool.objects.get(slug="web-search")
    assert tool.name == "Search the web" and tool.capability_class == "downstream_api"
    assert not Tool.objects.filter(slug="renamed").exists()


def test_the_tools_page_shows_create_and_edit_only_to_catalogue_managers(client, cast):
    client.force_login(cast["approver"])
    page = client.get(reverse("workloads:tools")).content.decode()
    assert "Web search" in page and reverse("workloads:tool_create") not in page
    client.force_login(cast["admin"])
    page = client.get(reverse("workloads:tools")).content.decode()
    assert reverse("workloads:tool_create") in page


RULE = {
    "slug": "no-exfil",
    "name": "No exfiltration",
    "groups": "data_store, file_read\nmessaging | tool:web-fetch",
    "scope": "static",
    "effect": "forbid",
    "enabled": "on",
}


def test_rule_groups_are_entered_one_per_line_with_alternatives(admin_client):
    response = admin_client.post(reverse("workloads:rule_create"), RULE)
    assert response.status_code == 303
    rule = CombinationRule.objects.get(slug="no-exfil")
    assert rule.groups == [["data_store", "file_read"], ["messaging", "tool:web-fetch"]]
    assert rule.enabled and rule.effect == "forbid"


@pytest.mark.parametrize(
    ("groups", "named"),
    [
        ("messaging\nmessaging", "Any messaging tool"),  # one group twice
        ("messaging, web_access\nmessaging", "Any messaging tool"),  # overlapping
        ("tool:send-email\nmessaging", "The tool send-email"),  # a tool and its own class
    ],
)
def test_a_rule_one_tool_would_trip_alone_is_refused_in_place(admin_client, groups, named):
    response = admin_client.post(reverse("workloads:rule_create"), RULE | {"groups": groups})
    assert response.status_code == 422
    assert f"{named} alone would match every group" in response.content.decode()
    assert not CombinationRule.objects.filter(slug=RULE["slug"]).exists()


def test_a_capability_change_that_would_let_one_tool_trip_a_rule_is_refused(admin_client):
    """The rule-side check, from the tool's side: send-email turned into a data store would
    alone match both groups of a rule that keeps it away from data stores."""
    admin_client.post(
        reverse("workloads:rule_create"), RULE | {"groups": "tool:send-email\ndata_store"}
    )
    tool = Tool.objects.get(slug="send-email")
    url = reverse("workloads:tool_edit", args=[tool.slug])
    form = {
        "name": tool.name,
        "capability_class": "data_store",
        "risk": tool.risk,
        "mcp_server": tool.mcp_server,
        "description": tool.description,
    }
    response = admin_client.post(url, form)
    assert response.status_code == 422
    assert "send-email alone would match every group of rule No exfiltration" in (
        response.content.decode()
    )
    tool.refresh_from_db()
    assert tool.capability_class == "messaging"
    CombinationRule.objects.filter(slug="no-exfil").update(enabled=False)
    assert admin_client.post(url, form).status_code in (302, 303)  # a disabled rule: fine


def test_a_new_grant_rule_names_the_workloads_that_already_hold_the_combination(admin_client):
    holder = ClassifiedWorkloadFactory(slug="holder")
    excepted = ClassifiedWorkloadFactory(slug="excepted")
    half = ClassifiedWorkloadFactory(slug="half")
    for workload in (holder, excepted):
        EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="file-read"))
        EntitlementFactory(workload=workload, tool=Tool.objects.get(slug="send-email"))
    EntitlementFactory(workload=half, tool=Tool.objects.get(slug="file-read"))
    rule = {**RULE, "groups": "file_read\nmessaging"}
    created = admin_client.post(reverse("workloads:rule_create"), rule, follow=True)
    [note] = [str(m) for m in created.context["messages"]]
    assert "2 workloads already hold this combination" in note and "excepted, holder" in note
    RuleException.objects.create(
        workload=excepted,
        rule=CombinationRule.objects.get(slug="no-exfil"),
        status="active",
        valid_from=timezone.now() - timedelta(days=1),
        valid_until=timezone.now() + timedelta(days=1),
    )
    url = reverse("workloads:rule_edit", args=["no-exfil"])
    response = admin_client.post(url, rule, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1
    assert "1 workload already holds this combination" in shown[0] and "holder" in shown[0]
    assert "excepted" not in shown[0] and "half" not in shown[0]
    admin_client.post(url, {**rule, "scope": "dynamic"}, follow=True)  # sessions only: no note
    response = admin_client.get(reverse("workloads:rules"))
    assert not list(response.context["messages"])


def test_an_unknown_group_entry_is_shown_on_the_groups_field(admin_client):
    response = admin_client.post(
        reverse("workloads:rule_create"), {**RULE, "groups": "web_access\nteleport"}, headers=HX
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#catalogue-form"
    assert "Line 2: unknown teleport" in response.content.decode()
    assert not CombinationRule.objects.filter(slug="no-exfil").exists()


def test_editing_a_rule_shows_its_groups_as_lines_and_saves_changes(admin_client):
    url = reverse("workloads:rule_edit", args=["lethal-trifecta"])
    form = admin_client.get(url).context["form"]
    assert form.initial["groups"].splitlines()[1] == "web_access"
    admin_client.post(url, {**RULE, "slug": "ignored", "enabled": ""})
    rule = CombinationRule.objects.get(slug="lethal-trifecta")
    assert rule.enabled is False and rule.name == "No exfiltration"
    assert AuditEvent.objects.filter(action="rule.update", object_id=rule.pk).exists()


def test_a_rule_one_tool_trips_alone_can_still_be_switched_off(admin_user):
    from workloads.services import combination_rule_save

    rule = CombinationRule.objects.create(
        slug="bad", name="Bad", groups=[["messaging"], ["messaging"]], scope="static"
    )
    saved = combination_rule_save(by=admin_user, rule=rule, enabled=False)
    assert saved.enabled is False
