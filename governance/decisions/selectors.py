"""Reads of the decision log, scoped to who may read it."""

import django_filters
from django.db.models import QuerySet

from governance.models import Decision


class DecisionFilter(django_filters.FilterSet):
    """The console's filters; each is backed by an index on Decision."""

    workload = django_filters.CharFilter()
    tool = django_filters.CharFilter()
    decision = django_filters.ChoiceFilter(choices=Decision.Answer.choices)
    session = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="decided_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="decided_at", lookup_expr="lt")

    class Meta:
        model = Decision
        fields = ["workload", "tool", "decision", "session"]


def decisions_visible_to(user) -> QuerySet[Decision]:
    if user.is_authenticated and user.has_perm("governance.view_decisions"):
        return Decision.objects.all()
    return Decision.objects.none()


def decision_list(*, user, filters=None) -> QuerySet[Decision]:
    """Visible decisions, newest first, filtered (invalid filter values match nothing)."""
    qs = decisions_visible_to(user).select_related("token").order_by("-decided_at", "-id")
    if not filters:
        return qs
    filterset = DecisionFilter(filters, queryset=qs)
    return filterset.qs if filterset.is_valid() else qs.none()


def decisions_for_session(*, user, workload: str, session_external_id: str) -> QuerySet[Decision]:
    """A session's decisions in order, for the session timeline (link: ?workload=&session=)."""
    return (
        decisions_visible_to(user)
        .filter(workload=workload, session=session_external_id)
        .order_by("decided_at", "id")
    )
