"""Finding filters, shared by the queue page and the REST list so they never disagree."""

import django_filters
from django import forms
from django.db.models import Exists, OuterRef
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from governance.filtering import StableOrderingFilter
from governance.forms import DATETIME_BOUNDS
from governance.models import ContainmentAction, Finding, FindingKind, Severity
from workloads.models import SensitivityTier


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    """A whole-number id: `1.5` or one past any database's range is invalid, not a 500."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


# Closed or not, the finding holds a containment measure nobody reversed yet.
IN_FORCE = "in_force"


def containment_in_force_q():
    """Findings with a containment record not reversed (the partial index
    containment_in_force serves it)."""
    return Exists(
        ContainmentAction.objects.filter(finding_id=OuterRef("pk"), reversed_at__isnull=True)
    )


# Still needing work: the dashboard counts these, and links to the queue filtered on them.
UNRESOLVED = "unresolved"


class FindingFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=FindingKind.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    status = django_filters.ChoiceFilter(
        choices=[*Finding.Status.choices, (UNRESOLVED, "Unresolved (open or acknowledged)")],
        method="with_status",
        label="Status, or `unresolved` for open and acknowledged together",
    )
    containment = django_filters.ChoiceFilter(
        choices=[(IN_FORCE, "In force")],
        method="with_containment",
        label="`in_force`: findings (closed ones too) whose containment still holds",
    )
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    tier = django_filters.ModelChoiceFilter(
        field_name="workload__tier", to_field_name="slug", queryset=SensitivityTier.objects.all()
    )
    session = IdFilter(field_name="session_id", label="Session id")
    assignee = django_filters.CharFilter(field_name="assignee__username", label="Assignee username")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        label="Raised at or after (ISO 8601)",
        validators=DATETIME_BOUNDS,
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        label="Raised before (ISO 8601)",
        validators=DATETIME_BOUNDS,
    )
    ordering = StableOrderingFilter(
        fields=(("created_at", "created"), ("severity_rank", "severity")),
        tie_break=("-created_at", "-id"),
        label="`-created` (newest first, the default), `created`, `-severity` (most severe "
        "first) or `severity`",
    )

    class Meta:
        model = Finding
        fields = [
            "kind",
            "severity",
            "status",
            "containment",
            "workload",
            "tier",
            "session",
            "assignee",
        ]

    def with_status(self, queryset, name, value: str):
        if value == UNRESOLVED:
            return queryset.filter(status__in=(Finding.Status.OPEN, Finding.Status.ACKNOWLEDGED))
        return queryset.filter(status=value)

    def with_containment(self, queryset, name, value: str):
        return queryset.filter(containment_in_force_q()) if value == IN_FORCE else queryset
