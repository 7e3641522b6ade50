from typing import cast

from django import forms
from django.contrib.auth import get_user_model

from governance.findings.narrowing import DECIDED, HIGHEST, LIMIT_LABELS, LIMITS, LOWEST
from governance.findings.services import COMMENT_MAX
from governance.models import ContainmentAction, Finding


class BulkTriageForm(forms.Form):
    """Not `status`: the queue's status filter travels in the same POST."""

    ids = forms.TypedMultipleChoiceField(coerce=int, choices=(), required=True)
    new_status = forms.ChoiceField(choices=Finding.Status.choices)
    comment = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, finding_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        ids = cast(forms.TypedMultipleChoiceField, self.fields["ids"])
        ids.choices = [(i, i) for i in finding_ids]


class StatusForm(forms.Form):
    """A move of one finding. `seen_status` is the status the page showed: the service
    refuses the move when the finding has moved since (someone else acted first)."""

    status = forms.ChoiceField(choices=Finding.Status.choices)
    comment = forms.CharField(
        required=False,
        max_length=COMMENT_MAX,
        label="Comment (optional)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    seen_status = forms.ChoiceField(
        choices=Finding.Status.choices, required=False, widget=forms.HiddenInput
    )


class AssignForm(forms.Form):
    """Whom a finding is assigned to, by username; empty assigns it to nobody. An unknown
    username is an error, not "nobody": it un-assigned the finding and said it was updated."""

    assignee = forms.CharField(required=False, max_length=150)

    def clean_assignee(self):
        username = self.cleaned_data["assignee"].strip()
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError("No user has that username.", code="invalid")
        return user


class CommentForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=COMMENT_MAX)


class ContainmentApplyForm(forms.Form):
    action = forms.ChoiceField(choices=ContainmentAction.Action.choices)
    reason = forms.CharField(max_length=500, label="Why")


class NarrowSessionsForm(forms.Form):
    """Lower caps on the workload's session limits; a blank field leaves that limit alone.
    Each field says the value in force, which the service checks the cap against."""

    reason = forms.CharField(max_length=500, label="Why")

    def __init__(self, *args, in_force: dict, **kwargs):
        super().__init__(*args, **kwargs)
        for name in LIMITS:
            current = in_force.get(name)
            self.fields[name] = forms.IntegerField(
                required=False,
                min_value=LOWEST[name],
                max_value=HIGHEST,
                label=LIMIT_LABELS[name],
                help_text=(
                    f"In force: {'no limit' if current is None else current} · "
                    + ("held at each decision" if name in DECIDED else "judged by evaluation")
                ),
            )
        self.order_fields([*LIMITS, "reason"])

    def caps(self) -> dict:
        return {name: self.cleaned_data[name] for name in LIMITS}


class ContainmentLiftForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            (ContainmentAction.Action.SUSPEND_WORKLOAD, "the suspension"),
            (ContainmentAction.Action.GATE_SESSIONS, "the session gate"),
        ]
    )
    reason = forms.CharField(max_length=500, label="Reason for lifting")


class ContainmentReverseForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        label="Reason for reversing",
        error_messages={"required": "Say why the containment is reversed."},
    )


class ReevaluationForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=365, initial=7, label="Days back")
