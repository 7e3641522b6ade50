"""Filters for requests, rule exceptions, session windows and session approvals, shared by
the pages and the REST lists so they never disagree."""

import django_filters
from django.utils import timezone

from governance.filtering import StableOrderingFilter
from governance.models import AccessRequest
from workloads.models import RuleException, SessionApproval, SessionExtension
from workloads.selectors import grants_with_status


class AccessRequestFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AccessRequest.Status.choices)
    kind = django_filters.ChoiceFilter(choices=AccessRequest.Kind.choices)
    workload = django_filters.CharFilter(field_name="workload__slug")
    ordering = StableOrderingFilter(
        fields=(("created_at", "created"), ("expires_at", "expires")),
        tie_break=("-created_at", "-id"),
    )

    class Meta:
        model = AccessRequest
        fields = ["status", "kind", "workload"]


def _status_as_of_now(queryset, name, value: str):
    """The status a reader sees: an active row past its end is `expired`."""
    return grants_with_status(queryset, value, timezone.now())


class RuleExceptionFilter(django_filters.FilterSet):
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    rule = django_filters.CharFilter(field_name="rule__slug", label="Rule slug")
    status = django_filters.ChoiceFilter(
        choices=RuleException.Status.choices, method=_status_as_of_now, label="Status (as of now)"
    )

    class Meta:
        model = RuleException
        fields = ["workload", "rule", "status"]


class SessionWindowFilter(django_filters.FilterSet):
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    status = django_filters.ChoiceFilter(
        choices=SessionExtension.Status.choices,
        method=_status_as_of_now,
        label="Status (as of now)",
    )

    class Meta:
        model = SessionExtension
        fields = ["workload", "status"]


class SessionApprovalFilter(django_filters.FilterSet):
    workload = django_filters.CharFilter(field_name="workload__slug", label="Workload slug")
    session = django_filters.CharFilter(label="Session id")
    status = django_filters.ChoiceFilter(
        choices=SessionApproval.Status.choices,
        method=_status_as_of_now,
        label="Status (as of now)",
    )

    class Meta:
        model = SessionApproval
        fields = ["workload", "session", "status"]
