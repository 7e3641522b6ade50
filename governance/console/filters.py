"""Audit log filters. Each one is served by an index on AuditEvent (actor_label, action,
object_type+object_id, created_at); matches are exact so those indexes are used."""

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone

from governance.models import AuditEvent

# Dates a day's bounds can be computed for in any time zone (date.max + 1 day overflows).
_DAYS = [MinValueValidator(date(1900, 1, 1)), MaxValueValidator(date(9998, 12, 31))]


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


class _AuditFilterForm(forms.Form):
    def clean(self):
        super().clean()
        data = self.cleaned_data  # what Form.clean returns (its stub allows None, for overrides)
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "To is before From: no event can match.")
        return data


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_label", label="Actor")
    action = django_filters.CharFilter(field_name="action", label="Action")
    object_type = django_filters.CharFilter(field_name="object_type", label="Object type")
    object_id = django_filters.CharFilter(field_name="object_id", label="Object id")
    since = django_filters.DateFilter(method="filter_since", label="From", validators=_DAYS)
    until = django_filters.DateFilter(
        method="filter_until", label="To (inclusive)", validators=_DAYS
    )

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "object_type", "object_id"]
        form = _AuditFilterForm

    def filter_since(self, queryset, name, value):
        return queryset.filter(created_at__gte=_day_start(value))

    def filter_until(self, queryset, name, value):
        return queryset.filter(created_at__lt=_day_start(value + timedelta(days=1)))
