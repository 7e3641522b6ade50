"""The list filters' ordering, shared by every console list and REST list that sorts."""

import django_filters
from django import forms
from django.utils import timezone


class StableOrderingFilter(django_filters.OrderingFilter):
    """Orders by the chosen fields, then by `tie_break` (which ends in a unique field), so
    rows that tie on the chosen field (thousands of workloads share a status) keep one order
    from page to page: paging neither repeats nor skips a row.

    Empty choices are no ordering: django-filter cleans `?ordering=,` to `["", ""]`, which as
    field names made `order_by("")` fail with a 500 (found by schemathesis)."""

    def __init__(self, *args, tie_break: tuple[str, ...] = ("-id",), **kwargs):
        self.tie_break = tie_break
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        ordering = [self.get_ordering_value(param) for param in value or () if param]
        if not ordering:
            return qs
        chosen = {field.lstrip("-") for field in ordering}
        return qs.order_by(
            *ordering, *(field for field in self.tie_break if field.lstrip("-") not in chosen)
        )


class _StrictNullBooleanField(forms.NullBooleanField):
    """true/false (or 1/0), or absent; anything else is an error, where Django's field reads
    it as "not given" and the list comes back unfiltered without a word."""

    widget = forms.TextInput  # the select widget maps any unknown value to None first

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in (True, "True", "true", "1"):
            return True
        if value in (False, "False", "false", "0"):
            return False
        raise forms.ValidationError("Use true or false.", code="invalid")

    def validate(self, value):
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = _StrictNullBooleanField


def filter_form(filterset_class: type[django_filters.FilterSet], filters: dict) -> forms.Form:
    """A list page's filter form, bound to `filters` and validated, for the page to show its
    field errors. The selector filters with the same FilterSet and matches nothing on an
    invalid value; without the errors the page said "No … match" and never why."""
    filterset = filterset_class(filters, queryset=filterset_class._meta.model.objects.none())
    filterset.form.is_valid()
    return filterset.form


def datetime_local_shown(form: forms.Form, filters: dict, names=("since", "until")) -> dict:
    """`filters` with each valid date-time written as a datetime-local input shows it, in the
    viewer's zone. A browser leaves such an input empty for anything else (`…Z`, an offset,
    a bare date), so a list filtered by a link showed no filter in its fields."""
    shown = dict(filters)
    cleaned = getattr(form, "cleaned_data", {})
    for name in names:
        value = cleaned.get(name)
        if value is not None and name not in form.errors:
            shown[name] = timezone.localtime(value).strftime("%Y-%m-%dT%H:%M:%S")
    return shown
