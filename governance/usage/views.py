"""Sessions per workload and a session's timeline."""

from django.core.paginator import Paginator
from django.shortcuts import render

from governance.decisions.selectors import session_decisions
from governance.findings import selectors
from governance.permissions import requires
from governance.usage.filters import SessionState

VIEW = "governance.view_findings"
FILTER_KEYS = ("workload", "state", "since", "until")


@requires(VIEW)
def sessions(request):
    filters = {key: request.GET.get(key, "") for key in FILTER_KEYS}
    workload = filters["workload"]
    page = Paginator(selectors.session_list(user=request.user, filters=filters), 25).get_page(
        request.GET.get("page")
    )
    template = "usage/sessions.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(
        request,
        template,
        {"page": page, "workload": workload, "filters": filters, "states": SessionState.choices},
    )


@requires(VIEW)
def timeline(request, pk):
    session = selectors.session_get(user=request.user, pk=pk)
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    # The same rule as the sessions API: event text only at the full-trace logging level.
    content_kept = selectors.session_logs_content(session)
    context = {
        "session": session,
        "content_kept": content_kept,
        "gateway": session_decisions(user=request.user, session=session),
        **selectors.session_timeline(session=session, page=page, with_content=content_kept),
    }
    return render(request, "usage/timeline.html", context)
