"""The workload filters, shared by the HTML list and the REST list so they never disagree."""

import django_filters
from django.db.models import Q
from django.utils import timezone

from governance.filtering import StableOrderingFilter, StrictBooleanFilter
from workloads.models import CapabilityClass, Entitlement, SensitivityTier, Tool, Workload
from workloads.selectors import grants_with_status


class WorkloadFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    tier = django_filters.ModelChoiceFilter(
        field_name="tier", to_field_name="slug", queryset=SensitivityTier.objects.all()
    )
    status = django_filters.ChoiceFilter(choices=Workload.Status.choices)
    owner = django_filters.CharFilter(field_name="owner__username")
    unclassified = StrictBooleanFilter(field_name="tier", lookup_expr="isnull")
    ordering = StableOrderingFilter(
        fields=(
            ("slug", "slug"),
            ("name", "name"),
            ("created_at", "created"),
            ("status", "status"),
            ("tier__rank", "tier"),
        ),
        tie_break=("slug",),
    )

    class Meta:
        model = Workload
        fields = ["tier", "status", "owner", "unclassified"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(slug__icontains=value) | Q(name__icontains=value) | Q(purpose__icontains=value)
        )


class ToolFilter(django_filters.FilterSet):
    capability_class = django_filters.ChoiceFilter(choices=CapabilityClass.choices)

    class Meta:
        model = Tool
        fields = ["capability_class"]


class GrantFilter(django_filters.FilterSet):
    """Status is the status a reader sees: an active grant past its end is `expired`."""

    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    tool = django_filters.CharFilter(field_name="tool__slug", label="Tool slug")
    status = django_filters.ChoiceFilter(
        choices=Entitlement.Status.choices, method="with_status", label="Status"
    )

    class Meta:
        model = Entitlement
        fields = ["workload", "tool", "status"]

    def with_status(self, queryset, name, value: str):
        return grants_with_status(queryset, value, timezone.now())
