"""Reference data every installation starts with: tiers, tools and the lethal-trifecta rule."""

from django.db import transaction

from workloads.models import CombinationRule, SensitivityTier, Tool

TIERS = [
    dict(
        slug="generation-only",
        name="Generation only",
        rank=10,
        description="Answers from the model alone; no tools that touch data or the world.",
        max_session_seconds=300,
        idle_timeout_seconds=120,
        max_tool_calls=10,
        max_reasoning_tokens=20_000,
        loop_threshold=3,
        logging_level="metadata",
        retention_days=30,
        approvals_required=1,
        max_grant_days=365,
    ),
    dict(
        slug="internal-read",
        name="Internal read",
        rank=20,
        description="Reads internal data; changes nothing.",
        max_session_seconds=900,
        idle_timeout_seconds=300,
        max_tool_calls=50,
        max_reasoning_tokens=50_000,
        loop_threshold=3,
        logging_level="metadata",
        retention_days=90,
        approvals_required=1,
        max_grant_days=180,
    ),
    dict(
        slug="internal-act",
        name="Internal act",
        rank=30,
        description="Acts on internal systems: writes files, calls internal APIs.",
        max_session_seconds=1800,
        idle_timeout_seconds=300,
        max_tool_calls=100,
        max_reasoning_tokens=100_000,
        loop_threshold=3,
        logging_level="full_trace",
        retention_days=180,
        approvals_required=2,
        max_grant_days=90,
        revoke_on_critical=True,
    ),
    dict(
        slug="boundary-crossing",
        name="Boundary crossing",
        rank=40,
        description="Crosses the trust boundary: web, external messaging, code execution.",
        max_session_seconds=3600,
        idle_timeout_seconds=600,
        max_tool_calls=200,
        max_reasoning_tokens=200_000,
        loop_threshold=3,
        logging_level="full_trace",
        retention_days=365,
        approvals_required=2,
        max_grant_days=30,
        grant_end_required=True,
        suspend_on_critical=True,
        revoke_on_critical=True,
        gate_sessions_on_high=True,
    ),
]

TOOLS = [
    dict(slug="web-search", name="Web search", capability_class="web_access", risk="high"),
    dict(slug="web-fetch", name="Fetch URL", capability_class="web_access", risk="high"),
    dict(
        slug="file-read",
        name="Read files",
        capability_class="file_read",
        risk="medium",
        mcp_server="filesystem",
    ),
    dict(
        slug="file-write",
        name="Write files",
        capability_class="file_write",
        risk="high",
        mcp_server="filesystem",
    ),
    dict(slug="code-exec", name="Run code", capability_class="code_execution", risk="critical"),
    dict(slug="sql-query", name="Query warehouse", capability_class="data_store", risk="medium"),
    dict(slug="crm-api", name="CRM API", capability_class="downstream_api", risk="medium"),
    dict(slug="send-email", name="Send email", capability_class="messaging", risk="high"),
]

TRIFECTA = dict(
    slug="lethal-trifecta",
    name="Lethal trifecta",
    description=(
        "Private data access, untrusted content and a way out in one place: a prompt "
        "injection in fetched content can read data and send it away."
    ),
    groups=[["data_store", "file_read"], ["web_access"], ["code_execution", "messaging"]],
    scope="both",
    effect="exception_required",
)


def _known(model, values: dict) -> dict:
    """The values the model has fields for: an early migration passes a model from before
    later fields (which their own migrations then set)."""
    names = {field.name for field in model._meta.get_fields()}
    return {name: value for name, value in values.items() if name in names}


@transaction.atomic
def seed_reference_data(
    tier_model=SensitivityTier, tool_model=Tool, rule_model=CombinationRule
) -> None:
    """Idempotent: creates what is missing, never overwrites an admin's edits.

    The models are parameters so the data migration can pass its historical ones.
    """
    for tier in TIERS:
        tier_model.objects.get_or_create(slug=tier["slug"], defaults=_known(tier_model, tier))
    for tool in TOOLS:
        tool_model.objects.get_or_create(slug=tool["slug"], defaults=tool)
    rule_model.objects.get_or_create(slug=TRIFECTA["slug"], defaults=TRIFECTA)
