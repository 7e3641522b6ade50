"""Sessions per workload and a session's timeline."""

import re
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from governance.decisions.selectors import session_decisions
from governance.filtering import datetime_local_shown, filter_form
from governance.findings import selectors
from governance.htmx import is_fragment_request
from governance.numbers import whole_number
from governance.permissions import requires
from governance.usage.filters import SessionFilter, SessionState

VIEW = "governance.view_findings"
FILTER_KEYS = ("workload", "state", "since", "until")
# Far past any run (200 million events), and small enough that the page's OFFSET fits the
# database's integers: a bigger number overflowed SQLite into a 500.
MAX_TIMELINE_PAGE = 1_000_000


@requires(VIEW)
def sessions(request):
    filters = {key: request.GET.get(key, "") for key in FILTER_KEYS}
    workload = filters["workload"]
    page = Paginator(selectors.session_list(user=request.user, filters=filters), 25).get_page(
        request.GET.get("page")
    )
    # Only sessions whose workload logs full traces show what they were asked.
    content_shown = {s.pk for s in page if selectors.workload_logs_content(s.workload)}
    form = filter_form(SessionFilter, filters)
    template = "usage/sessions.html"
    if is_fragment_request(request):
        template += "#table"
    return render(
        request,
        template,
        {
            "page": page,
            "workload": workload,
            "filters": datetime_local_shown(form, filters),
            "filter_form": form,
            "states": SessionState.choices,
            "content_shown": content_shown,
            # Paging keeps every filter, as typed.
            "query": urlencode({k: v for k, v in filters.items() if v}),
        },
    )


@requires(VIEW)
def timeline(request, pk):
    session = selectors.session_get(user=request.user, pk=pk)
    event = request.GET.get("event", "")
    if "page" not in request.GET and re.fullmatch(r"[0-9]{1,18}", event):
        # A link to one event (a finding's evidence): the page it is on.
        page = selectors.session_event_page(session=session, event_id=int(event))
    else:
        page = _timeline_page(request.GET.get("page", ""))
    # The same rule as the sessions API: event text only at the full-trace logging level.
    content_kept = selectors.session_logs_content(session)
    context = {
        "session": session,
        "content_kept": content_kept,
        # Evaluation reads the text (loops, drift); people see it only at full trace.
        "withheld_note": "Not shown: this workload's logging level is metadata only.",
        "gateway": session_decisions(user=request.user, session=session),
        **selectors.session_timeline(session=session, page=page, with_content=content_kept),
    }
    if page > 1 and not context["rows"]:
        raise Http404("No such page of events.")
    return render(request, "usage/timeline.html", context)


def _timeline_page(raw: str) -> int:
    """The page asked for: the first for anything but a plain number (ASCII digits), 404 past
    the last possible one (the view 404s a page past the session's end too)."""
    page = whole_number(raw)
    if page is None:
        return 1
    if page > MAX_TIMELINE_PAGE:
        raise Http404("No such page of events.")
    return max(page, 1)
