"""Demo data for a fresh embedded install: one user per role and a few workloads.

Everything goes through the services, so the demo starts with a real audit trail.
"""

import secrets
from datetime import timedelta
from typing import TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from governance.ingest.records import EventRecord, arguments_hash
from governance.ingest.store import usage_events_store
from governance.roles import ROLES
from workloads import services
from workloads.models import SensitivityTier, Tool, Workload


class DemoWorkload(TypedDict):
    """One demo workload: its registration fields, tier slug (None: left unclassified) and
    granted tools."""

    slug: str
    name: str
    model_family: str
    environment: str
    data_categories: list[str]
    purpose: str
    tier: str | None
    tools: list[str]


DEMO_WORKLOADS: list[DemoWorkload] = [
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


def _demo_usage() -> list[EventRecord]:
    """A few agent runs: one clean, one that loops, one that uses a tool it was not granted,
    one that completes the lethal trifecta. The worker evaluates them after the first run."""
    workloads = dict(Workload.objects.values_list("slug", "id"))
    start = timezone.now()  # after the grants, so granted tools are used within their window
    records = []

    def add(slug, session, n, kind, seconds, tool="", content="", args="", reasoning=0):
        records.append(
            EventRecord(
                workload_id=workloads[slug],
                session_key=session,
                event_id=f"demo-{session}-{n}",
                type=kind,
                occurred_at=start + timedelta(seconds=seconds),
                tool=tool,
                tool_call_id=f"call-{n}" if tool else "",
                arguments_hash=arguments_hash({"q": args}) if tool else "",
                content=content,
                input_tokens=200 if kind == "reasoning_step" else 0,
                output_tokens=reasoning,
                reasoning_tokens=reasoning,
                duration_ms=800 if tool else None,
                attributes="{}",
            )
        )

    add(
        "support-triage",
        "run-clean",
        1,
        "session_start",
        0,
        content="Draft a reply to ticket 4411 about a billing question",
    )
    add("support-triage", "run-clean", 2, "reasoning_step", 2, reasoning=900)
    add("support-triage", "run-clean", 3, "tool_call", 4, tool="crm-api", args="customer 4411")
    add(
        "support-triage",
        "run-clean",
        4,
        "final_action",
        9,
        content="Drafted a reply to ticket 4411 explaining the billing plan",
    )
    add("support-triage", "run-clean", 5, "session_end", 10)
    add(
        "research-assistant",
        "run-loop",
        1,
        "session_start",
        0,
        content="Summarise public reporting on the EU AI Act",
    )
    for n in range(2, 7):
        add(
            "research-assistant",
            "run-loop",
            n,
            "tool_call",
            n * 3,
            tool="web-search",
            args="EU AI Act summary",
        )
    add("research-assistant", "run-loop", 7, "session_end", 30)
    add(
        "support-triage",
        "run-unentitled",
        1,
        "session_start",
        0,
        content="Check the customer's plan for ticket 4412",
    )
    add(
        "support-triage",
        "run-unentitled",
        2,
        "tool_call",
        3,
        tool="send-email",
        args="customer 4412",
    )
    add(
        "data-analyst",
        "run-trifecta",
        1,
        "session_start",
        0,
        content="Compare our revenue with competitors' public figures",
    )
    add("data-analyst", "run-trifecta", 2, "tool_call", 2, tool="sql-query", args="revenue")
    add("data-analyst", "run-trifecta", 3, "tool_call", 4, tool="web-search", args="competitors")
    add("data-analyst", "run-trifecta", 4, "tool_call", 6, tool="code-exec", args="compare")
    add("data-analyst", "run-trifecta", 5, "session_end", 8)
    return records


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
                reason="Demo: what the workload was built to call.",
            )
    # Stored like any reported batch; evaluation is enqueued after commit.
    usage_events_store(records=_demo_usage(), source="native")
    return credentials
