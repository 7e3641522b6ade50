"""The decision log in the console. Thin: parse filters, call the selector, render."""

from urllib.parse import urlencode

from django.shortcuts import render

from governance.dashboard import bar_chart as reason_bars
from governance.decisions.selectors import decision_chart_series, decision_list
from governance.findings.charts import bar_chart as column_chart
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
        template += "#table"  # filtering redraws the table only: no chart queries
    else:
        series = decision_chart_series(user=request.user)
        context |= {
            "chart": series,
            "denied_chart": column_chart(series["denied_per_hour"]),
            # Reason codes are long: a wider label column than the dashboard's.
            "reasons_chart": reason_bars(
                [(code, n, "bar-deny") for code, n in series["reasons"]], label_width=200
            ),
        }
    return render(request, template, context)
