"""A service calling a wrong address gets a machine-readable 404, whatever DEBUG says; people
get the console's page (or, with DEBUG on, Django's debug page)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_is_a_json_404(client, settings, debug):
    settings.DEBUG = debug
    for method, path in (("get", "/api/v1/no-such-thing"), ("post", "/api/no-such-version")):
        response = getattr(client, method)(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
        assert response["X-Request-ID"]  # the other middleware still did their part


@pytest.mark.parametrize("debug", [False, True])
def test_an_otlp_exporter_with_a_trailing_slash_is_told_where_to_send(client, settings, debug):
    settings.DEBUG = debug
    as_json = client.post("/v1/traces/", data=b"{}", content_type="application/json")
    assert as_json.status_code == 404
    assert as_json["Content-Type"] == "application/json"
    assert as_json.json()["code"] == 5  # NOT_FOUND
    assert "/v1/traces (no trailing slash)" in as_json.json()["message"]
    as_protobuf = client.post(
        "/v1/traces/", data=b"\x0a\x00", content_type="application/x-protobuf"
    )
    assert as_protobuf.status_code == 404
    assert as_protobuf["Content-Type"] == "application/x-protobuf"
    assert as_protobuf.content.startswith(b"\x08\x05\x12")  # google.rpc.Status, code 5


def test_with_debug_on_console_paths_keep_the_debug_page(client, settings, owner):
    settings.DEBUG = True
    client.force_login(owner)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Using the URLconf defined in" in response.content.decode()  # Django's debug page
