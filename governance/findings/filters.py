"""Finding filters, shared by the queue page and the REST list so they never disagree."""

import django_filters
from django_filters.constants import EMPTY_VALUES

from governance.models import Finding, FindingKind, Severity
from workloads.models import SensitivityTier


class StableOrderingFilter(django_filters.OrderingFilter):
    """Orders by the chosen field, then newest first, so pages never shuffle on ties."""

    TIE_BREAK = ("-created_at", "-id")

    def filter(self, qs, value):
        qs = super().filter(qs, value)
        if value in EMPTY_VALUES:
            return qs
        ordering = list(qs.query.order_by)
        return qs.order_by(*ordering, *(f for f in self.TIE_BREAK if f not in ordering))


class FindingFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    status = django_filters.ChoiceFilter(choices=Finding.Status.choices)
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    tier = django_filters.ModelChoiceFilter(
        field_name="workload__tier", to_field_name="slug", queryset=SensitivityTier.objects.all()
    )
    session = django_filters.NumberFilter(field_name="session_id", label="Session id")
    assignee = django_filters.CharFilter(field_name="assignee__username", label="Assignee username")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Raised at or after (ISO 8601)"
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Raised before (ISO 8601)"
    )
    ordering = StableOrderingFilter(
        fields=(("created_at", "created"), ("severity_rank", "severity")),
        label="`-created` (newest first, the default), `created`, `-severity` (most severe "
        "first) or `severity`",
    )

    class Meta:
        model = Finding
        fields = ["kind", "severity", "status", "workload", "tier", "session", "assignee"]
