"""Session filters, shared by the sessions page and the REST list so they never disagree."""

import django_filters
from django.db import models

from governance.forms import DATETIME_BOUNDS
from workloads.models import Session


class SessionState(models.TextChoices):
    OPEN = "open", "Open (no end reported)"
    ENDED = "ended", "Ended"


class SessionFilter(django_filters.FilterSet):
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    state = django_filters.ChoiceFilter(
        choices=SessionState.choices, method="with_state", label="open or ended"
    )
    since = django_filters.IsoDateTimeFilter(
        field_name="started_at",
        lookup_expr="gte",
        label="Started at or after (ISO 8601)",
        validators=DATETIME_BOUNDS,
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="started_at",
        lookup_expr="lt",
        label="Started before (ISO 8601)",
        validators=DATETIME_BOUNDS,
    )

    class Meta:
        model = Session
        fields = ["workload", "state"]

    def with_state(self, queryset, name, value):
        return queryset.filter(ended_at__isnull=value == SessionState.OPEN)
