"""Console forms for the catalogue: they validate input; services do the writing."""

from django import forms
from django.contrib.auth import get_user_model

from governance.forms import DATETIME_BOUNDS, DateTimeLocalInput, comma_list
from workloads.combinations import parse_groups
from workloads.models import (
    CapabilityClass,
    CombinationRule,
    Environment,
    LoggingLevel,
    ModelFamily,
    RiskLevel,
    SensitivityTier,
    SessionPolicy,
    Tool,
    Workload,
)
from workloads.models.catalogue import slug_validator

ASSIGN_OWNER_PERMISSION = "workloads.classify_workload"


class WorkloadRegisterForm(forms.Form):
    """An owner registers for themself; an IAM admin may name another owner."""

    # A CharField, not a SlugField: Django's slug check beside slug_validator gave two
    # messages that contradicted each other.
    slug = forms.CharField(
        max_length=80, validators=[slug_validator], help_text="e.g. ticket-triage"
    )
    name = forms.CharField(max_length=120)
    purpose = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What it is for. Drift from this is flagged later, so be specific.",
    )
    model_family = forms.ChoiceField(choices=ModelFamily.choices)
    environment = forms.ChoiceField(choices=Environment.choices)
    data_categories = forms.CharField(
        required=False, help_text="Comma-separated, e.g. customer, financial"
    )
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
        required=False,
        help_text="Leave empty to own it yourself.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        if not user.has_perm(ASSIGN_OWNER_PERMISSION):
            del self.fields["owner"]

    def clean_data_categories(self) -> list[str]:
        return sorted(set(comma_list(self.cleaned_data["data_categories"])))

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data["owner"] = data.get("owner") or self.user
        return data


class ClassifyForm(forms.Form):
    tier = forms.ModelChoiceField(
        queryset=SensitivityTier.objects.order_by("rank"), to_field_name="slug"
    )
    rationale = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Why this tier fits."
    )


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Workload.Status.choices)
    reason = forms.CharField(required=False, max_length=500)


class SessionPolicyForm(forms.Form):
    """Blank means the tier default; a value tightens it (the service enforces the ceiling)."""

    max_session_seconds = forms.IntegerField(required=False, min_value=1, label="Max session (s)")
    idle_timeout_seconds = forms.IntegerField(required=False, min_value=1, label="Idle timeout (s)")
    max_tool_calls = forms.IntegerField(required=False, min_value=1, label="Max tool calls")
    max_reasoning_tokens = forms.IntegerField(
        required=False, min_value=1, label="Max reasoning tokens"
    )
    loop_threshold = forms.IntegerField(required=False, min_value=2, label="Loop threshold")
    logging_level = forms.ChoiceField(
        required=False, choices=[("", "Tier default"), *LoggingLevel.choices]
    )
    retention_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Retention (days)"
    )

    @classmethod
    def for_policy(cls, policy: SessionPolicy | None, data=None):
        initial = {}
        if policy is not None:
            initial = {name: getattr(policy, name) for name in cls.base_fields}
        return cls(data, initial=initial)


class GrantForm(forms.Form):
    tool = forms.ModelChoiceField(queryset=Tool.objects.order_by("name"), to_field_name="slug")
    valid_until = forms.DateTimeField(
        required=False, widget=DateTimeLocalInput(), validators=DATETIME_BOUNDS
    )
    reason = forms.CharField(
        max_length=2000,
        label="Why it needs the tool",
        help_text="Kept in the audit log, as a request's justification is.",
    )

    def __init__(self, *args, tier: SensitivityTier | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if tier is not None:  # say what an empty end means: the service applies the tier's rule
            days = tier.max_grant_days
            self.fields["valid_until"].help_text = (
                f"Required in the {tier.name} tier; at most {days} days."
                if tier.grant_end_required
                else f"At most {days} days; empty: {days} days, the {tier.name} tier's longest."
            )


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=500, label="Reason")


class ToolForm(forms.Form):
    slug = forms.CharField(max_length=80, validators=[slug_validator])
    name = forms.CharField(max_length=120)
    capability_class = forms.ChoiceField(choices=CapabilityClass.choices)
    risk = forms.ChoiceField(choices=RiskLevel.choices, initial=RiskLevel.MEDIUM)
    mcp_server = forms.CharField(max_length=200, required=False, label="MCP server")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, tool: Tool | None = None, **kwargs):
        if tool is not None:
            kwargs.setdefault("initial", {name: getattr(tool, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)
        if tool is not None:
            # A tool's slug is what services report in usage events; it does not change.
            self.fields["slug"].disabled = True

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if not self.fields["slug"].disabled and Tool.objects.filter(slug=slug).exists():
            raise forms.ValidationError("A tool with this slug exists.", code="duplicate")
        return slug


def rule_labels() -> set[str]:
    """What a rule group may name: capability classes and `tool:<slug>`."""
    return set(CapabilityClass.values) | {
        f"tool:{slug}" for slug in Tool.objects.values_list("slug", flat=True)
    }


class CombinationRuleForm(forms.Form):
    slug = forms.CharField(max_length=80, validators=[slug_validator])
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    groups = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=(
            "One group per line; alternatives comma-separated. Each entry is a capability "
            "class (e.g. web_access) or tool:<slug>. The rule trips when every line is met."
        ),
    )
    scope = forms.ChoiceField(choices=CombinationRule.Scope.choices)
    effect = forms.ChoiceField(choices=CombinationRule.Effect.choices)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, rule: CombinationRule | None = None, **kwargs):
        if rule is not None:
            initial = {name: getattr(rule, name) for name in self.base_fields}
            initial["groups"] = "\n".join(", ".join(group) for group in rule.groups)
            kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        if rule is not None:
            self.fields["slug"].disabled = True

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if not self.fields["slug"].disabled and CombinationRule.objects.filter(slug=slug).exists():
            raise forms.ValidationError("A rule with this slug exists.", code="duplicate")
        return slug

    def clean_groups(self) -> list[list[str]]:
        try:
            return parse_groups(self.cleaned_data["groups"], rule_labels())
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid_groups") from exc
