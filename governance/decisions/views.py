"""The decision log in the console. Thin: parse filters, call the selector, render."""

from urllib.parse import urlencode

from django.shortcuts import render

from governance.decisions.selectors import decision_list
from governance.permissions import requires

PAGE_SIZE = 50
FILTERS = ("workload", "tool", "decision", "session", "since", "until")


@requires("governance.view_decisions")
def decision_log_view(request):
    filters = {key: request.GET.get(key, "").strip() for key in FILTERS}
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    offset = (page - 1) * PAGE_SIZE
    # No COUNT(*) over the log: fetch one row more than a page to know if there is a next.
    rows = list(
        decision_list(user=request.user, filters={k: v for k, v in filters.items() if v})[
            offset : offset + PAGE_SIZE + 1
        ]
    )
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {
        "decisions": rows[:PAGE_SIZE],
        "filters": filters,
        "page": page,
        "has_next": len(rows) > PAGE_SIZE,
        "query": query,
    }
    template = "decisions/log.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, context)
