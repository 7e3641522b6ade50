from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from governance.forms import DATETIME_BOUNDS, DateTimeLocalInput, comma_list
from governance.models.tokens import TokenScope
from workloads.models import Workload


def _default_expiry() -> datetime:
    """A whole minute, as the field shows it, SERVICE_TOKEN_DEFAULT_DAYS from now."""
    end = timezone.localtime() + timedelta(days=settings.SERVICE_TOKEN_DEFAULT_DAYS)
    return end.replace(second=0, microsecond=0)


class ServiceTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="Who uses it, e.g. gateway-prod")
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple
    )
    all_workloads = forms.BooleanField(
        required=False, label="Any workload", help_text="Not bound: may act for every workload."
    )
    workloads = forms.CharField(
        required=False,
        label="Bound workloads",
        help_text="Workload slugs, comma-separated. Leave empty with “Any workload”.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        widget=DateTimeLocalInput(),
        validators=DATETIME_BOUNDS,
        label="Expires",
        initial=_default_expiry,
        help_text="A token that never expires needs this field emptied: rotate tokens instead.",
    )

    def clean_workloads(self) -> list[Workload]:
        slugs = sorted(set(comma_list(self.cleaned_data["workloads"])))
        found = list(Workload.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {w.slug for w in found})
        if missing:
            raise forms.ValidationError(f"Unknown workloads: {', '.join(missing)}")
        return found

    def clean(self):
        super().clean()
        data = self.cleaned_data  # what Form.clean returns (its stub allows None, for overrides)
        if data.get("all_workloads") and data.get("workloads"):
            self.add_error("workloads", "Either bind workloads or choose “Any workload”, not both.")
        elif not data.get("all_workloads") and not data.get("workloads") and not self.errors:
            self.add_error("workloads", "Bind at least one workload, or choose “Any workload”.")
        return data
