"""The workload filters, shared by the HTML list and the REST list so they never disagree."""

import django_filters
from django.db.models import Q

from workloads.models import SensitivityTier, Workload


class WorkloadFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    tier = django_filters.ModelChoiceFilter(
        field_name="tier", to_field_name="slug", queryset=SensitivityTier.objects.all()
    )
    status = django_filters.ChoiceFilter(choices=Workload.Status.choices)
    owner = django_filters.CharFilter(field_name="owner__username")
    unclassified = django_filters.BooleanFilter(field_name="tier", lookup_expr="isnull")
    ordering = django_filters.OrderingFilter(
        fields=(
            ("slug", "slug"),
            ("name", "name"),
            ("created_at", "created"),
            ("status", "status"),
            ("tier__rank", "tier"),
        )
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
