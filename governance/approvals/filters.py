"""Request filters, shared by the queue page and the REST list so they never disagree."""

import django_filters

from governance.models import AccessRequest


class AccessRequestFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AccessRequest.Status.choices)
    kind = django_filters.ChoiceFilter(choices=AccessRequest.Kind.choices)
    workload = django_filters.CharFilter(field_name="workload__slug")
    ordering = django_filters.OrderingFilter(
        fields=(("created_at", "created"), ("expires_at", "expires"))
    )

    class Meta:
        model = AccessRequest
        fields = ["status", "kind", "workload"]
