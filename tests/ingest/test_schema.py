"""Both plain hot-path views appear in the OpenAPI schema, documented like the rest."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from governance.ingest.urls import events_ingest, otlp_traces


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_the_events_endpoint_is_documented_with_its_errors(schema):
    operation = schema["paths"]["/api/v1/events"]["post"]
    assert operation["operationId"] == "events_ingest"
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "429", "503"}
    assert "examples" in operation["requestBody"]["content"]["application/json"]
    assert {"ServiceToken": []} in operation["security"]


def test_the_otlp_endpoint_is_documented_in_both_encodings(schema):
    operation = schema["paths"]["/v1/traces"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/x-protobuf",
        "application/json",
    }
    assert set(operation["responses"]) >= {"200", "400", "413", "429", "503"}
    # OTLP answers in the request's content type: a protobuf export gets protobuf back.
    for code, response in operation["responses"].items():
        assert set(response["content"]) == {"application/json", "application/x-protobuf"}, code


def test_the_json_hot_paths_document_json_bodies_only(schema):
    for path in ("/api/v1/events", "/api/v1/decisions"):
        assert set(schema["paths"][path]["post"]["requestBody"]["content"]) == {"application/json"}


def test_the_served_views_stay_plain_functions():
    for view in (events_ingest, otlp_traces):
        assert not hasattr(view, "view_class")
        assert view.required_scope == "ingest"
