"""Console pages that belong to no single concern."""

from django.shortcuts import render

from governance.permissions import requires
from governance.roles import CONSOLE
from workloads.selectors import workload_counts, workload_list


@requires(CONSOLE)
def dashboard(request):
    counts = workload_counts(user=request.user)
    unclassified = workload_list(user=request.user, filters={"unclassified": True}).order_by(
        "created_at"
    )[:10]
    return render(request, "dashboard.html", {"counts": counts, "unclassified": unclassified})
