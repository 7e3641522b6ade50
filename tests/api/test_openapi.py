import re
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_schema_generates_and_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn turns any drf-spectacular warning or error into a failure.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert "/api/v1/workloads" in schema["paths"]


def _schema(client) -> dict:
    response = client.get(reverse("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_the_bearer_scheme_and_the_error_shape(client):
    schema = _schema(client)
    scheme = schema["components"]["securitySchemes"]["ServiceToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "ErrorBody" in schema["components"]["schemas"]
    register = schema["paths"]["/api/v1/workloads"]["post"]
    assert {"ServiceToken": []} in register["security"]
    assert {"201", "400", "401", "403", "409", "429"} <= set(register["responses"])


def test_every_throttled_write_documents_429_and_503(client):
    """DRF writes go through WriteThrottle: over the rate (429) or with the rate unknown
    because the cache is down (503). The hot paths are plain views with their own limits."""
    from django.urls import resolve

    from governance.api_common import WriteThrottle

    schema = _schema(client)
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            view = resolve(re.sub(r"\{[^}]+\}", "1", path)).func
            cls = getattr(view, "cls", None)
            if cls is None or WriteThrottle not in getattr(cls, "throttle_classes", ()):
                continue
            if not {"429", "503"} <= set(operation["responses"]):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_every_api_operation_has_examples(client):
    schema = _schema(client)
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "patch", "put", "delete"}:
                continue
            documented = [
                media
                for code, response in operation["responses"].items()
                if code.startswith("2")
                for media in response.get("content", {}).values()
            ]
            if not any(media.get("examples") for media in documented):
                missing.append(f"{method.upper()} {path}")
            body = operation.get("requestBody", {}).get("content", {})
            if body and not any(media.get("examples") for media in body.values()):
                missing.append(f"{method.upper()} {path} (request)")
    assert missing == []


def test_the_docs_page_loads_only_local_files(client, settings):
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    html = response.content.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references, html
    for url in references:
        assert url.startswith(("/static/", "/api/")), url
    assert "//" not in "".join(references)
    # No inline script (CSP would block it); the one inline style carries the nonce.
    assert re.search(r"<script>(?!</script>)", html) is None
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in html


def test_the_docs_initialiser_is_served_as_a_local_script(client):
    url = re.search(
        r'<script src="([^"]*script[^"]*)"', client.get(reverse("api-docs")).content.decode()
    )
    assert url is not None
    script = client.get(url.group(1).replace("&amp;", "&"))
    assert script.status_code == 200
    assert "javascript" in script["Content-Type"]
    assert "SwaggerUIBundle" in script.content.decode()
    out = StringIO()
    call_command(
        "findstatic", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", stdout=out
    )
    assert "Found" in out.getvalue()


def test_request_bodies_that_refuse_unknown_fields_say_so(client):
    schemas = _schema(client)["components"]["schemas"]
    closed = {name for name, body in schemas.items() if body.get("additionalProperties") is False}
    assert {
        "WorkloadRegisterInputRequest",
        "AccessRequestInputRequest",
        "ApproveInputRequest",
        "FindingStatusInputRequest",
        "CheckInputRequest",
        "NativeEventDocRequest",
        "NativeBatchDocRequest",
    } <= closed
    # Answers are open: a client must accept fields added later.
    assert "AccessRequestOutput" not in closed


def _values_of(node, keys: set[str]):
    """Every string under one of `keys`, anywhere in a JSON tree (lists of slugs too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield key, value
            elif key in keys and isinstance(value, list):
                yield from ((key, item) for item in value if isinstance(item, str))
            else:
                yield from _values_of(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _values_of(item, keys)


def test_the_examples_name_the_demos_workloads_and_the_seeded_tools(client):
    """Whoever tries an example against `manage.py run` gets an answer about something that
    exists there, not a workload_not_found."""
    from governance.demo import DEMO_WORKLOADS
    from workloads.seed import TOOLS

    known = {
        "workload": {spec["slug"] for spec in DEMO_WORKLOADS},
        "tool": {tool["slug"] for tool in TOOLS},
        "tools": {tool["slug"] for tool in TOOLS},
    }
    examples = [
        example["value"]
        for path in _schema(client)["paths"].values()
        for operation in path.values()
        for part in (operation.get("requestBody", {}), *operation.get("responses", {}).values())
        for media in part.get("content", {}).values()
        for example in media.get("examples", {}).values()
    ]
    assert examples
    named = list(_values_of(examples, set(known)))
    assert {key for key, _ in named} == set(known)
    assert [(key, slug) for key, slug in named if slug not in known[key]] == []


@pytest.fixture
def superuser_api():
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    client = APIClient()
    client.force_login(UserFactory(is_superuser=True))
    return client


@pytest.fixture
def some_of_everything():
    """A workload, a session of it and a finding on it, so every {id} in the schema names a
    real object and an endpoint answers for what it does, not a 404 for the id."""
    from django.utils import timezone

    from governance.models import Finding
    from tests.evaluation.rows import make_session
    from tests.factories import ClassifiedWorkloadFactory

    workload = ClassifiedWorkloadFactory()
    session = make_session(workload)
    finding = Finding.objects.create(
        kind="reasoning_loop",
        severity="high",
        workload=workload,
        session=session,
        tool="web-search",
        summary="Called web-search 9 times with the same arguments.",
        dedupe_key="schema-test",
        occurred_at=timezone.now(),
    )
    return {"workloads": workload.slug, "sessions": session.pk, "findings": finding.pk}


def _url(path: str, ids: dict) -> str:
    collection = path.split("/")[3]
    return re.sub(r"\{[^}]+\}", str(ids.get(collection, 1)), path)


def test_every_paginated_list_documents_and_answers_its_page_errors(
    client, superuser_api, some_of_everything
):
    schema = _schema(client)
    lists = [
        path
        for path, item in schema["paths"].items()
        if any(p["name"] == "page" for p in item.get("get", {}).get("parameters", ()))
    ]
    assert {"/api/v1/tiers", "/api/v1/rules", "/api/v1/sessions/{id}/events"} <= set(lists)
    for path in lists:
        responses = schema["paths"][path]["get"]["responses"]
        assert {"400", "404"} <= set(responses), path
        assert "page" in responses["400"]["description"], path
        assert "PastTheLastPage" in responses["404"]["content"]["application/json"]["examples"]
        url = _url(path, some_of_everything)
        assert superuser_api.get(url).status_code == 200, path
        bad = superuser_api.get(url, {"page": 0})
        assert bad.status_code == 400, path
        assert bad.json()["error"]["fields"] == {"page": ["Give a whole number of 1 or more."]}
        past = superuser_api.get(url, {"page": 999})
        assert past.status_code == 404, path
        assert past.json()["error"] == {"code": "not_found", "message": "Invalid page."}


def test_every_write_that_reads_a_body_documents_and_answers_415(
    client, superuser_api, some_of_everything
):
    schema = _schema(client)
    writes = [
        (method, path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
        and path.startswith("/api/v1/")
        # the token-only hot paths have their own tests (tests/ingest, tests/decisions)
        and path not in ("/api/v1/events", "/api/v1/decisions")
    ]
    assert len(writes) > 10
    for method, path in writes:
        responses = schema["paths"][path][method]["responses"]
        assert "415" in responses, f"{method} {path}"
        answer = getattr(superuser_api, method)(
            _url(path, some_of_everything), data='{"a": 1}', content_type="text/plain"
        )
        assert answer.status_code == 415, f"{method} {path}: {answer.content}"
        assert answer.json()["error"]["code"] == "unsupported_media_type"
