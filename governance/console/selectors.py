"""Reads for the audit log and token pages. Both pages are permission-gated as a whole
(view_audit_log, manage_tokens), so these return everything the filters match."""

from django.db.models import Prefetch, QuerySet

from governance.console.filters import AuditEventFilter
from governance.models import AuditEvent, ServiceToken
from workloads.models import Workload


def audit_event_list(*, filters=None) -> tuple[QuerySet[AuditEvent], AuditEventFilter]:
    """Newest first; invalid filter values match nothing (the form shows why)."""
    qs = AuditEvent.objects.select_related("actor").order_by("-id")
    filterset = AuditEventFilter(filters or {}, queryset=qs)
    return (filterset.qs if filterset.is_valid() else qs.none()), filterset


def service_token_list() -> QuerySet[ServiceToken]:
    # Only the slugs of bound workloads are shown; a token bound to hundreds of workloads
    # made whole Workload rows (JSON decoded) the bulk of the page's time.
    bound = Workload.objects.only("id", "slug").order_by("slug")
    return (
        ServiceToken.objects.select_related("created_by")
        .prefetch_related(Prefetch("workloads", queryset=bound))
        .order_by("revoked_at", "name")
    )
