"""Everything under /api/v1/. Each concern adds its routes here."""

from django.urls import include, path

from governance.decisions.view import decide_view

urlpatterns = [
    path("", include("workloads.api_urls")),
    path("", include("governance.approvals.api_urls")),
    path("decisions", decide_view, name="decisions"),
]
