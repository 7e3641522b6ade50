"""Forms for filing and deciding requests. Domain rules live in the services; the views map
a DomainError back onto the field it names."""

from __future__ import annotations

from typing import cast

from django import forms

from governance.forms import DATETIME_BOUNDS
from governance.models import AccessRequest
from workloads.models import SESSION_ID_MAX, Tool, Workload


class ToolChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.name} ({obj.get_capability_class_display()}, {obj.risk} risk)"


class RequestForm(forms.Form):
    # The caller's visible workloads, set per form in __init__.
    workload: forms.ModelChoiceField[Workload] = forms.ModelChoiceField(
        queryset=None, to_field_name="slug"
    )
    kind = forms.ChoiceField(choices=AccessRequest.Kind.choices, initial=AccessRequest.Kind.TOOLS)
    tools = ToolChoiceField(
        queryset=Tool.objects.order_by("capability_class", "slug"),
        to_field_name="slug",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    duration_days = forms.IntegerField(required=False, min_value=1, label="Duration (days)")
    valid_until = forms.DateTimeField(
        required=False,
        label="Or end at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        validators=DATETIME_BOUNDS,
    )
    max_session_seconds = forms.IntegerField(required=False, min_value=1)
    max_tool_calls = forms.IntegerField(required=False, min_value=1)
    max_reasoning_tokens = forms.IntegerField(required=False, min_value=1)
    # Not stripped: services send ids as they are, and the service refuses padded ones.
    session = forms.CharField(
        required=False, max_length=SESSION_ID_MAX, label="Session id", strip=False
    )

    def __init__(self, *args, workloads, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["workload"]).queryset = workloads

    def session_limits(self) -> dict:
        names = ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")
        return {name: self.cleaned_data.get(name) for name in names}


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(required=False, max_length=4000)
    justification = forms.CharField(required=False, max_length=4000)


class BulkDecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(required=False, max_length=4000)
    ids = forms.TypedMultipleChoiceField(coerce=int, choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        ids = cast(forms.TypedMultipleChoiceField, self.fields["ids"])
        ids.choices = [(v, v) for v in raw if str(v).isdigit()]


class CancelForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000)


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=2000)
