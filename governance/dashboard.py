"""The dashboard: counts drawn as server-rendered SVG bars, plus panels other concerns add.

To add a panel (findings, requests …) append a DashboardPanel to PANELS from your own module
(imported by your app's `ready()` or listed here): a template rendered in the dashboard's
panel slot, shown to users with `permission`, with the context `context(request)` returns.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

BAR_CHART_WIDTH = 360
BAR_LABEL_WIDTH = 130
BAR_HEIGHT = 22
BAR_GAP = 8


@dataclass(frozen=True)
class DashboardPanel:
    template: str
    permission: str
    context: Callable = field(default=lambda request: {})


def _decisions_panel(request) -> dict:
    from governance.decisions.selectors import decision_chart_series
    from governance.findings.charts import bar_chart as column_chart

    series = decision_chart_series(user=request.user)
    return {"series": series, "denied_chart": column_chart(series["denied_per_hour"])}


PANELS: list[DashboardPanel] = [
    # Findings and sessions over time, top workloads by open findings (loaded over htmx).
    DashboardPanel("findings/_dashboard_include.html", "governance.view_findings"),
    # The gateway's answers over 24 hours, from the decision log's hourly counts (one query).
    DashboardPanel(
        "decisions/_dashboard_panel.html", "governance.view_decisions", _decisions_panel
    ),
]


def panels_for(request) -> list[dict]:
    """The panels this user may see, each with its template and context, in PANELS order."""
    return [
        {"template": panel.template, "context": panel.context(request)}
        for panel in PANELS
        if request.user.has_perm(panel.permission)
    ]


def bar_chart(rows: list[tuple[str, int, str]], *, label_width: int = BAR_LABEL_WIDTH) -> dict:
    """Horizontal bars as SVG geometry: rows of (label, count, css class).

    Geometry goes in SVG attributes, colours in CSS classes: nothing needs a style attribute,
    so the page keeps its strict CSP.
    """
    largest = max((count for _, count, _ in rows), default=0) or 1
    width_all = BAR_CHART_WIDTH - BAR_LABEL_WIDTH + label_width
    span = width_all - label_width - 40
    bars = []
    for index, (label, count, css) in enumerate(rows):
        y = index * (BAR_HEIGHT + BAR_GAP)
        width = round(span * count / largest) if count else 0
        bars.append(
            {
                "label": label,
                "count": count,
                "css": css,
                "y": y,
                "text_y": y + BAR_HEIGHT // 2 + 5,
                "x": label_width,
                "width": max(width, 2 if count else 0),
                "count_x": label_width + width + 6,
            }
        )
    height = max(len(rows) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP, BAR_HEIGHT)
    return {
        "bars": bars,
        "width": width_all,
        "track_width": span,
        "height": height,
        "bar_height": BAR_HEIGHT,
        "label_x": label_width - 8,
        "total": sum(count for _, count, _ in rows),
    }
