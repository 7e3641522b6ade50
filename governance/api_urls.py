"""Everything under /api/v1/. Each concern adds its routes here."""

from django.urls import include, path

urlpatterns = [
    path("", include("workloads.api_urls")),
    path("", include("governance.approvals.api_urls")),
]
