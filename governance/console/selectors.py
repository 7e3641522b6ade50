"""Reads for the audit log and token pages. Both pages are permission-gated as a whole
(view_audit_log, manage_tokens), so these return everything the filters match."""

from django.db.models import QuerySet

from governance.console.filters import AuditEventFilter
from governance.models import AuditEvent, ServiceToken


def audit_event_list(*, filters=None) -> tuple[QuerySet[AuditEvent], AuditEventFilter]:
    """Newest first; invalid filter values match nothing (the form shows why)."""
    qs = AuditEvent.objects.select_related("actor").order_by("-id")
    filterset = AuditEventFilter(filters or {}, queryset=qs)
    return (filterset.qs if filterset.is_valid() else qs.none()), filterset


def service_token_list() -> QuerySet[ServiceToken]:
    return (
        ServiceToken.objects.select_related("created_by")
        .prefetch_related("workloads")
        .order_by("revoked_at", "name")
    )
