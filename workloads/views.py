"""Catalogue pages. Thin: parse, call a selector or service, render."""

from django.core.paginator import Paginator
from django.shortcuts import render

from governance.permissions import requires
from governance.roles import CONSOLE
from workloads.selectors import entitlements_of, workload_get, workload_list


@requires(CONSOLE)
def workload_list_view(request):
    filters = {
        key: request.GET.get(key, "") for key in ("tier", "status", "owner", "q", "unclassified")
    }
    page = Paginator(workload_list(user=request.user, filters=filters), 25).get_page(
        request.GET.get("page")
    )
    template = "workloads/list.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, {"page": page, "filters": filters})


@requires(CONSOLE)
def workload_detail_view(request, slug):
    workload = workload_get(user=request.user, slug=slug)
    return render(
        request,
        "workloads/detail.html",
        {
            "workload": workload,
            "grants": entitlements_of(workload=workload),
        },
    )
