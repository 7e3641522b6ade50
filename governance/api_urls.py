"""Everything under /api/v1/. Each concern adds its routes here."""

from django.urls import include, path

from governance.ingest.urls import api_urlpatterns as ingest_api_urlpatterns

urlpatterns = [
    path("", include("workloads.api_urls")),
    *ingest_api_urlpatterns,
]
