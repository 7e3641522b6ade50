"""REST shapes of findings: explicit fields, outputs read-only, the one triage input strict."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api_common import StrictInput
from governance.findings.selectors import finding_details_shown
from governance.findings.services import ALLOWED_TRANSITIONS
from governance.models import ContainmentAction, Finding, FindingComment


class FindingOutput(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tier = serializers.SlugRelatedField(
        source="workload.tier", slug_field="slug", read_only=True, allow_null=True
    )
    session = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    assignee = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    evidence = serializers.ListField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text="Ids of the usage events that prove it (see /sessions/{id}/events).",
    )

    class Meta:
        model = Finding
        fields = [
            "id",
            "kind",
            "severity",
            "status",
            "workload",
            "tier",
            "session",
            "tool",
            "summary",
            "evidence",
            "assignee",
            "occurred_at",
            "created_at",
            "updated_at",
            "resolved_at",
        ]
        read_only_fields = fields


class FindingCommentOutput(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = FindingComment
        fields = ["id", "author", "body", "created_at"]
        read_only_fields = fields


class ContainmentOutput(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    grant = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    tool = serializers.SlugRelatedField(
        source="grant.tool", slug_field="slug", read_only=True, allow_null=True
    )
    reversed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    limits = serializers.DictField(
        child=serializers.IntegerField(),
        read_only=True,
        help_text="A narrowing's caps, by session-limit name (max_session_seconds, "
        "idle_timeout_seconds, max_tool_calls, max_reasoning_tokens, loop_threshold); they "
        "hold until the action is reversed. Empty for other actions.",
    )

    class Meta:
        model = ContainmentAction
        fields = [
            "id",
            "action",
            "workload",
            "grant",
            "tool",
            "limits",
            "reason",
            "reverse_reason",
            "created_at",
            "reversed_at",
            "reversed_by",
        ]
        read_only_fields = fields


class FindingDetailOutput(FindingOutput):
    details = serializers.SerializerMethodField(
        help_text="Which signal fired and the values it saw (per kind). Below the full_trace "
        "logging level, values quoted from the session (a drift finding's "
        "`targets_outside_request`) are replaced by how many there were."
    )
    comments = FindingCommentOutput(many=True, read_only=True)
    containment = ContainmentOutput(many=True, read_only=True)
    next_statuses = serializers.SerializerMethodField(
        help_text="The statuses POST /findings/{id}/status accepts from here."
    )

    class Meta(FindingOutput.Meta):
        fields = [*FindingOutput.Meta.fields, "details", "comments", "containment", "next_statuses"]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField())
    def get_details(self, finding) -> dict:
        return finding_details_shown(finding)

    @extend_schema_field(
        serializers.ListField(child=serializers.ChoiceField(choices=Finding.Status.choices))
    )
    def get_next_statuses(self, finding: Finding) -> list[str]:
        return sorted(ALLOWED_TRANSITIONS[finding.status])


class FindingStatusInput(StrictInput):
    status = serializers.ChoiceField(
        choices=Finding.Status.choices,
        help_text="acknowledged, resolved or false_positive (open reopens a closed finding).",
    )
    comment = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Kept with it."
    )


class FindingAssigneeInput(StrictInput):
    assignee = serializers.CharField(
        max_length=150,
        allow_null=True,
        help_text="Username of someone who can triage findings; null unassigns.",
    )


class FindingCommentInput(StrictInput):
    body = serializers.CharField(max_length=5000, help_text="Kept on the finding; audited.")
