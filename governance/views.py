"""Console pages that belong to no single concern."""

from governance.dashboard import bar_chart, panels_for
from governance.htmx import render_page
from governance.permissions import requires
from governance.roles import CONSOLE
from workloads.models import SensitivityTier, Workload
from workloads.selectors import workload_counts, workload_list

UNCLASSIFIED_SHOWN = 10


@requires(CONSOLE)
def dashboard(request):
    counts = workload_counts(user=request.user)
    by_status = counts["by_status"]
    status_chart = bar_chart(
        [
            (label, by_status.get(value, 0), f"bar-{value}")
            for value, label in Workload.Status.choices
        ]
    )
    tier_counts = {row["tier__rank"]: row["n"] for row in counts["by_tier"]}
    tier_chart = bar_chart(
        [
            (tier.name, tier_counts.get(tier.rank, 0), f"bar-tier-{tier.rank}")
            for tier in SensitivityTier.objects.order_by("rank")
        ]
        + [("Unclassified", tier_counts.get(None, 0), "bar-unclassified")]
    )
    unclassified = workload_list(user=request.user, filters={"unclassified": True})
    context = {
        "status_chart": status_chart,
        "tier_chart": tier_chart,
        "unclassified": unclassified.order_by("created_at")[:UNCLASSIFIED_SHOWN],
        "unclassified_total": tier_counts.get(None, 0),
        "panels": panels_for(request),
    }
    return render_page(request, "dashboard.html", context)
