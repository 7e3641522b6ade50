"""The audit log: every state change, filterable, newest first."""

from governance.audit_labels import audit_labels_attach
from governance.console.selectors import audit_event_list
from governance.htmx import render_page
from governance.keyset import keyset_page_from_request
from governance.permissions import requires

PAGE_SIZE = 50
FILTER_KEYS = ("actor", "action", "object_type", "object_id", "since", "until")


@requires("governance.view_audit_log")
def audit_log_view(request):
    filters = {key: request.GET.get(key, "") for key in FILTER_KEYS}
    events, filterset = audit_event_list(filters={k: v for k, v in filters.items() if v})
    # Keyset pages: as fast at the millionth event as at the first, and no COUNT(*).
    page = keyset_page_from_request(events, request, fields=("id",), size=PAGE_SIZE)
    audit_labels_attach(page.rows)
    query = request.GET.copy()
    for cursor in ("before", "after", "page"):
        query.pop(cursor, None)
    context = {"page": page, "filters": filters, "form": filterset.form, "query": query.urlencode()}
    return render_page(
        request, "governance/audit_log.html", context, partials={"audit-table": "table"}
    )
