"""Finding filters, shared by the queue page and any list endpoint."""

import django_filters

from governance.models import Finding, FindingKind, Severity
from workloads.models import SensitivityTier


class FindingFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    status = django_filters.ChoiceFilter(choices=Finding.Status.choices)
    workload = django_filters.CharFilter(field_name="workload__slug")
    tier = django_filters.ModelChoiceFilter(
        field_name="workload__tier", to_field_name="slug", queryset=SensitivityTier.objects.all()
    )
    assignee = django_filters.CharFilter(field_name="assignee__username")

    class Meta:
        model = Finding
        fields = ["kind", "severity", "status", "workload", "tier", "assignee"]
