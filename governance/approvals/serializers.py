"""REST shapes for access requests: explicit input and output, fields listed."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api_common import StrictInput
from governance.models import AccessRequest, ApprovalDecision, ApprovalStep
from workloads.models import SESSION_ID_MAX, RuleException, SessionApproval, SessionExtension


class StepOutput(serializers.ModelSerializer):
    decided_by = serializers.SerializerMethodField()
    decided_at = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalStep
        fields = ["position", "kind", "rules", "reason", "decided_by", "decided_at"]
        read_only_fields = fields

    def _decision(self, step):
        try:
            return step.decision
        except ApprovalDecision.DoesNotExist:
            return None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decided_by(self, step):
        decision = self._decision(step)
        return decision.approver.get_username() if decision else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_decided_at(self, step):
        decision = self._decision(step)
        return decision.created_at if decision else None


class ApprovalDecisionOutput(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.get_username")

    class Meta:
        model = ApprovalDecision
        fields = ["approver", "verdict", "comment", "justification", "created_at"]
        read_only_fields = fields


class AccessRequestOutput(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    tools = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True)
    steps = StepOutput(many=True, read_only=True)
    decisions = ApprovalDecisionOutput(many=True, read_only=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "workload",
            "kind",
            "tools",
            "justification",
            "duration_days",
            "valid_until",
            "max_session_seconds",
            "max_tool_calls",
            "max_reasoning_tokens",
            "session",
            "status",
            "requested_by",
            "created_at",
            "expires_at",
            "decided_at",
            "decision_reason",
            "impact",
            "steps",
            "decisions",
        ]
        read_only_fields = fields


class AccessRequestInput(StrictInput):
    workload = serializers.SlugField(max_length=80)
    kind = serializers.ChoiceField(
        choices=AccessRequest.Kind.choices, default=AccessRequest.Kind.TOOLS
    )
    tools = serializers.ListField(
        child=serializers.SlugField(max_length=80), required=False, default=list, max_length=50
    )
    justification = serializers.CharField(max_length=4000)
    duration_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Days from approval, at most the tier's max_grant_days. With neither this nor "
        "valid_until, the tier's longest grant (a tier with grant_end_required refuses that).",
    )
    valid_until = serializers.DateTimeField(
        required=False, allow_null=True, help_text="A fixed end instead of duration_days."
    )
    max_session_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_tool_calls = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_reasoning_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    session = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=SESSION_ID_MAX,
        help_text="kind session_run only: the session id to let run while the workload's "
        "sessions need approval (a containment). Its approval lasts SESSION_APPROVAL_HOURS "
        "(24 by default); give no duration or end.",
    )
    on_behalf_of = serializers.CharField(
        required=False,
        max_length=150,
        help_text="Service tokens: the owner's username (defaults to the user the token acts "
        "for; a token acting for nobody must name one). A person files for themselves only.",
    )


class CancelInput(StrictInput):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ApproveInput(StrictInput):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    justification = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=4000,
        help_text="Required when an iam_admin approves the rule-exception step.",
    )


class DenyInput(StrictInput):
    comment = serializers.CharField(max_length=4000, help_text="Why; kept on the request.")


class _StatusAsOfNow(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.SerializerMethodField(
        help_text="As of now: an active one past its end reads as expired."
    )
    request = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The approved request that created it."
    )
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    @extend_schema_field(serializers.ChoiceField(choices=RuleException.Status.choices))
    def get_status(self, obj) -> str:
        return obj.effective_status


class RuleExceptionOutput(_StatusAsOfNow):
    rule = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RuleException
        fields = [
            "id",
            "workload",
            "rule",
            "justification",
            "status",
            "valid_from",
            "valid_until",
            "approved_by",
            "request",
            "created_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
        ]
        read_only_fields = fields


class SessionWindowOutput(_StatusAsOfNow):
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SessionExtension
        fields = [
            "id",
            "workload",
            "max_session_seconds",
            "max_tool_calls",
            "max_reasoning_tokens",
            "status",
            "valid_from",
            "valid_until",
            "granted_by",
            "request",
            "created_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
        ]
        read_only_fields = fields


class SessionApprovalOutput(_StatusAsOfNow):
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SessionApproval
        fields = [
            "id",
            "workload",
            "session",
            "status",
            "valid_from",
            "valid_until",
            "approved_by",
            "request",
            "created_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
        ]
        read_only_fields = fields


class RevokeInput(StrictInput):
    reason = serializers.CharField(max_length=2000, help_text="Why; kept and audited.")
