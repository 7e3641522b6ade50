"""Demo data for a fresh embedded install: one user per role and a few workloads.

Everything goes through the services, so the demo starts with a real audit trail.
"""

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from governance.roles import ROLES
from workloads import services
from workloads.models import SensitivityTier, Tool, Workload

DEMO_WORKLOADS = [
    dict(
        slug="support-triage",
        name="Support triage",
        model_family="o1",
        environment="production",
        data_categories=["customer", "tickets"],
        purpose="Read incoming support tickets, look up the customer's plan in the CRM and "
        "draft a reply for a human agent to send.",
        tier="internal-read",
        tools=["crm-api", "file-read"],
    ),
    dict(
        slug="research-assistant",
        name="Research assistant",
        model_family="claude-3-7-sonnet",
        environment="production",
        data_categories=["public"],
        purpose="Search the web and summarise public sources for the strategy team.",
        tier="boundary-crossing",
        tools=["web-search", "web-fetch"],
    ),
    dict(
        slug="data-analyst",
        name="Data analyst",
        model_family="deepseek-r1",
        environment="staging",
        data_categories=["finance"],
        purpose="Answer questions about revenue by querying the warehouse and running "
        "analysis code in a sandbox.",
        tier="internal-act",
        tools=["sql-query", "code-exec"],
    ),
    dict(
        slug="release-notes-bot",
        name="Release notes bot",
        model_family="other",
        environment="development",
        data_categories=["source"],
        purpose="Draft release notes from merged pull requests.",
        tier=None,
        tools=[],
    ),
]


def demo_needed() -> bool:
    return not get_user_model().objects.exists()


@transaction.atomic
def demo_seed() -> dict[str, str]:
    """Create the cast and the demo workloads; returns username → password, shown once."""
    User = get_user_model()
    credentials = {}
    users = {}
    for role in ROLES:
        username = "admin" if role == "iam_admin" else role
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(
            username=username, password=password, email=f"{username}@mandate.local"
        )
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
        credentials[username] = password
    admin, owner = users["iam_admin"], users["owner"]
    now = timezone.now()
    for spec in DEMO_WORKLOADS:
        workload = services.workload_register(
            by=owner,
            owner=owner,
            slug=spec["slug"],
            name=spec["name"],
            purpose=spec["purpose"],
            model_family=spec["model_family"],
            environment=spec["environment"],
            data_categories=spec["data_categories"],
        )
        if not spec["tier"]:
            continue
        tier = SensitivityTier.objects.get(slug=spec["tier"])
        workload = services.workload_classify(
            workload=workload,
            tier=tier,
            by=admin,
            rationale=f"Demo: {tier.description}",
        )
        services.workload_set_status(workload=workload, status=Workload.Status.ACTIVE, by=admin)
        for tool_slug in spec["tools"]:
            services.entitlement_grant(
                workload=workload,
                tool=Tool.objects.get(slug=tool_slug),
                by=admin,
                valid_until=now + timedelta(days=min(tier.max_grant_days, 30)),
            )
    return credentials
