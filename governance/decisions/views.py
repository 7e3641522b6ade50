"""The decision log in the console. Thin: parse filters, call the selector, render."""

from urllib.parse import urlencode

from django.shortcuts import render

from governance.dashboard import bar_chart as reason_bars
from governance.decisions.selectors import (
    DecisionFilter,
    decision_chart_series,
    decision_list,
    decision_log_losses,
    decisions_link_timelines,
)
from governance.filtering import datetime_local_shown, filter_form
from governance.findings.charts import bar_chart as column_chart
from governance.htmx import is_fragment_request
from governance.keyset import keyset_page_from_request
from governance.permissions import requires

PAGE_SIZE = 50
FILTERS = ("workload", "tool", "decision", "session", "since", "until")


@requires("governance.view_decisions")
def decision_log_view(request):
    filters = {key: request.GET.get(key, "").strip() for key in FILTERS}
    given = {k: v for k, v in filters.items() if v}
    visible = decision_list(user=request.user, filters=given)
    # Keyset pages: the hundredth page costs what the first does, and no COUNT(*) of the log.
    keyset = keyset_page_from_request(visible, request, fields=("decided_at", "id"), size=PAGE_SIZE)
    form = filter_form(DecisionFilter, given)
    context = {
        # Each decision with a session links to its timeline when Mandate has its usage.
        "decisions": decisions_link_timelines(user=request.user, decisions=keyset.rows),
        "keyset": keyset,
        "filters": datetime_local_shown(form, filters),
        "filter_form": form,
        "query": urlencode({k: v for k, v in filters.items() if v}),
    }
    template = "decisions/log.html"
    if is_fragment_request(request):
        template += "#table"  # filtering redraws the table only: no chart queries
    else:
        series = decision_chart_series(user=request.user)
        context |= {
            "losses": decision_log_losses(user=request.user),
            "chart": series,
            "denied_chart": column_chart(series["denied_per_hour"]),
            # Reason codes are long: a wider label column than the dashboard's.
            "reasons_chart": reason_bars(
                [(code, n, "bar-deny") for code, n in series["reasons"]], label_width=200
            ),
        }
    return render(request, template, context)
