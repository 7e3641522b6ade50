"""REST shapes of the catalogue: explicit fields, outputs read-only, inputs strict."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api_common import StrictInput
from workloads.models import (
    CombinationRule,
    Entitlement,
    Environment,
    ModelFamily,
    SensitivityTier,
    Tool,
    Workload,
)
from workloads.models.catalogue import slug_validator
from workloads.selectors import effective_session_limits, grant_status_at, grants_valid_at

# --- outputs ---------------------------------------------------------------------------------


class TierOutput(serializers.ModelSerializer):
    class Meta:
        model = SensitivityTier
        fields = [
            "slug",
            "name",
            "rank",
            "description",
            "max_session_seconds",
            "idle_timeout_seconds",
            "max_tool_calls",
            "max_reasoning_tokens",
            "loop_threshold",
            "logging_level",
            "retention_days",
            "approvals_required",
            "max_grant_days",
            "grant_end_required",
        ]
        read_only_fields = fields


class TierSummary(serializers.ModelSerializer):
    class Meta:
        model = SensitivityTier
        fields = ["slug", "name", "rank"]
        read_only_fields = fields


class ToolOutput(serializers.ModelSerializer):
    class Meta:
        model = Tool
        fields = ["slug", "name", "capability_class", "risk", "mcp_server", "description"]
        read_only_fields = fields


class CombinationRuleOutput(serializers.ModelSerializer):
    groups = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        read_only=True,
        help_text="The rule trips when every group is matched by at least one tool; an entry "
        "is a capability class or `tool:<slug>`.",
    )

    class Meta:
        model = CombinationRule
        fields = ["slug", "name", "description", "groups", "scope", "effect", "enabled"]
        read_only_fields = fields


class GrantOutput(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tool = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.SerializerMethodField(
        help_text="As of now: an active grant past its end reads as expired."
    )
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Entitlement
        fields = [
            "id",
            "workload",
            "tool",
            "status",
            "valid_from",
            "valid_until",
            "constraints",
            "granted_by",
            "created_at",
            "revoked_at",
            "revoke_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Entitlement.Status.choices))
    def get_status(self, grant: Entitlement) -> str:
        return grant_status_at(grant, self.context.get("now") or timezone.now())


class ActiveGrantOutput(serializers.ModelSerializer):
    tool = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    capability_class = serializers.CharField(source="tool.capability_class", read_only=True)

    class Meta:
        model = Entitlement
        fields = ["id", "tool", "capability_class", "valid_from", "valid_until", "constraints"]
        read_only_fields = fields


class SessionLimitsOutput(serializers.Serializer):
    """The session policy in force: overrides, else tier defaults, raised by valid extensions.
    Null everywhere while the workload is unclassified."""

    max_session_seconds = serializers.IntegerField(allow_null=True)
    idle_timeout_seconds = serializers.IntegerField(allow_null=True)
    max_tool_calls = serializers.IntegerField(allow_null=True)
    max_reasoning_tokens = serializers.IntegerField(allow_null=True)
    loop_threshold = serializers.IntegerField(allow_null=True)
    logging_level = serializers.CharField(allow_null=True)
    retention_days = serializers.IntegerField(allow_null=True)


class WorkloadOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Workload
        fields = [
            "slug",
            "name",
            "purpose",
            "owner",
            "model_family",
            "environment",
            "data_categories",
            "status",
            "tier",
            "classification_rationale",
            "classified_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WorkloadDetailOutput(WorkloadOutput):
    tier = TierSummary(read_only=True, allow_null=True)
    classified_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    session_policy = serializers.SerializerMethodField()
    active_grants = serializers.SerializerMethodField()

    class Meta(WorkloadOutput.Meta):
        fields = [*WorkloadOutput.Meta.fields, "classified_by", "session_policy", "active_grants"]
        read_only_fields = fields

    def _now(self):
        return self.context.setdefault("now", timezone.now())

    @extend_schema_field(SessionLimitsOutput)
    def get_session_policy(self, workload: Workload) -> dict:
        return effective_session_limits(workload=workload, at=self._now())

    @extend_schema_field(ActiveGrantOutput(many=True))
    def get_active_grants(self, workload: Workload) -> list:
        grants = grants_valid_at(workload=workload, at=self._now())
        return ActiveGrantOutput(grants, many=True).data


# --- inputs ----------------------------------------------------------------------------------


class WorkloadRegisterInput(StrictInput):
    slug = serializers.CharField(max_length=80, validators=[slug_validator])
    name = serializers.CharField(max_length=120)
    purpose = serializers.CharField(
        max_length=4000, help_text="Declared purpose: the yardstick for drift."
    )
    owner = serializers.CharField(
        max_length=150,
        required=False,
        help_text="Username of the owner. Required with a service token; a signed-in user "
        "owns what they register unless they are an IAM admin naming someone else.",
    )
    model_family = serializers.ChoiceField(choices=ModelFamily.choices)
    environment = serializers.ChoiceField(choices=Environment.choices)
    data_categories = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=32, required=False, default=list
    )


class WorkloadUpdateInput(StrictInput):
    name = serializers.CharField(max_length=120, required=False)
    purpose = serializers.CharField(max_length=4000, required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give a new name and/or purpose.")
        return attrs
