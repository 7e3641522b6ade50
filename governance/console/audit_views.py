"""The audit log: every state change, filterable, newest first."""

from django.core.paginator import Paginator

from governance.console.selectors import audit_event_list
from governance.htmx import render_page
from governance.permissions import requires

PAGE_SIZE = 50
FILTER_KEYS = ("actor", "action", "object_type", "object_id", "since", "until")


@requires("governance.view_audit_log")
def audit_log_view(request):
    filters = {key: request.GET.get(key, "") for key in FILTER_KEYS}
    events, filterset = audit_event_list(filters={k: v for k, v in filters.items() if v})
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "filters": filters, "form": filterset.form, "query": query.urlencode()}
    return render_page(
        request, "governance/audit_log.html", context, partials={"audit-table": "table"}
    )
