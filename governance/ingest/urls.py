"""Routes of the two ingestion views (mounted by governance/api_urls.py and governance/urls.py)."""

from django.urls import path

from governance.ingest import views
from governance.ingest.openapi import EventsIngestDoc, OtlpTracesDoc, documented_by

events_ingest = documented_by(EventsIngestDoc)(views.events_ingest)
otlp_traces = documented_by(OtlpTracesDoc)(views.otlp_traces)

api_urlpatterns = [path("events", events_ingest, name="events-ingest")]
otlp_urlpatterns = [path("v1/traces", otlp_traces, name="otlp-traces")]
