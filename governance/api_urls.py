"""Everything under /api/v1/. Each concern adds its routes here."""

from django.urls import include, path

from governance.decisions.view import decide_view
from governance.ingest.urls import api_urlpatterns as ingest_api_urlpatterns

urlpatterns = [
    path("", include("workloads.api_urls")),
    path("", include("governance.approvals.api_urls")),
    path("", include("governance.findings.api_urls")),
    path("", include("governance.usage.api_urls")),
    path("decisions", decide_view, name="decisions"),
    *ingest_api_urlpatterns,
]
