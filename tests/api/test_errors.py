"""Every failure answers in the one error shape, with the right status, and never 500s."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from governance.tokens import service_token_revoke
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.django_db

REGISTER = {
    "slug": "ok-slug",
    "name": "Name",
    "purpose": "Purpose",
    "owner": "owner",
    "model_family": "o1",
    "environment": "production",
}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


def assert_401(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response)["code"] == "not_authenticated"


def test_no_credentials_is_a_401_with_a_bearer_challenge(api):
    assert_401(api.get("/api/v1/workloads"))


def test_an_unknown_token_is_a_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer mnd_not-a-real-token")
    assert_401(api.get("/api/v1/workloads"))


def test_an_expired_token_is_a_401(token_api):
    client = token_api(expires_at=timezone.now() + timedelta(days=1))
    assert client.get("/api/v1/tiers").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert_401(client.get("/api/v1/tiers"))


def test_a_revoked_token_is_a_401(token_api):
    client = token_api()
    service_token_revoke(token=client.token, by=None)
    assert_401(client.get("/api/v1/tiers"))


def test_a_token_without_the_scope_is_a_403(token_api, owner):
    client = token_api(scopes=["read"], all_workloads=True)
    response = client.post("/api/v1/workloads", REGISTER, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    ingest_only = token_api(scopes=["ingest"], all_workloads=True)
    assert ingest_only.get("/api/v1/workloads").status_code == 403


def test_a_user_without_the_permission_is_a_403(user_api, reviewer):
    response = user_api(reviewer).post("/api/v1/workloads", REGISTER, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_field_errors_name_each_field(token_api, owner):
    response = token_api(scopes=["write"]).post(
        "/api/v1/workloads",
        {"slug": "Not A Slug", "name": 12, "model_family": "gpt-9", "environment": ["x"]},
        format="json",
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert {"slug", "purpose", "model_family", "environment"} <= set(error["fields"])
    assert all(isinstance(m, list) and m for m in error["fields"].values())


def test_malformed_json_is_a_400(token_api):
    response = token_api(scopes=["write"]).generic(
        "POST", "/api/v1/workloads", '{"slug": "x",', content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed"


@pytest.mark.parametrize(
    "body", ["[]", '"text"', "null", "42", "[1, 2]", '{"slug": NaN}', '{"name": Infinity}']
)
def test_a_body_that_is_not_an_object_is_a_400(token_api, body):
    response = token_api(scopes=["write"]).generic(
        "POST", "/api/v1/workloads", body, content_type="application/json"
    )
    assert response.status_code == 400
    error_of(response)


def test_a_huge_string_is_a_400_not_a_500(token_api, owner):
    response = token_api(scopes=["write"]).post(
        "/api/v1/workloads", REGISTER | {"purpose": "x" * 200_000}, format="json"
    )
    assert response.status_code == 400
    assert "purpose" in error_of(response)["fields"]


def test_a_body_nested_past_the_recursion_limit_is_a_400_not_a_500(token_api):
    body = '{"slug": ' + "[" * 5000 + "]" * 5000 + "}"
    response = token_api(scopes=["write"]).generic(
        "POST", "/api/v1/workloads", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed"


def test_a_body_over_the_upload_limit_is_a_413(token_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = token_api(scopes=["write"]).post(
        "/api/v1/workloads", REGISTER | {"purpose": "x" * 5000}, format="json"
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


def test_a_form_encoded_body_is_a_415(token_api):
    response = token_api(scopes=["write"]).post("/api/v1/workloads", {"slug": "x"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_an_unsupported_method_is_a_405(token_api, user_api, admin_user):
    WorkloadFactory(slug="w")
    client = token_api(scopes=["read", "write"], all_workloads=True)
    for method, url in [
        ("delete", "/api/v1/workloads/w"),
        ("put", "/api/v1/workloads/w"),
        ("delete", "/api/v1/workloads"),
        ("post", "/api/v1/tiers"),
    ]:
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 405, (method, url)
        assert error_of(response)["code"] == "method_not_allowed"
    assert user_api(admin_user).delete("/api/v1/workloads/w").status_code == 405


def test_an_unknown_api_path_is_a_json_404(token_api):
    response = token_api().get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unknown_workload_is_a_404_in_the_error_shape(token_api):
    response = token_api(all_workloads=True).get("/api/v1/workloads/NOPE.x")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_write_is_refused_with_a_503_when_the_rate_cannot_be_checked(token_api, monkeypatch):
    from django.core.cache import cache

    from workloads.models import Workload

    def cache_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(cache, "add", cache_down)
    client = token_api(scopes=["read", "write"], all_workloads=True)
    response = client.post("/api/v1/workloads", REGISTER | {"slug": "w-cache"}, format="json")
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert response["Retry-After"] == "5"
    assert not Workload.objects.filter(slug="w-cache").exists()
    assert client.get("/api/v1/workloads").status_code == 200  # reads are not write-throttled


def test_writes_are_throttled_with_a_429_and_retry_after(token_api, owner, settings):
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"write": "2/min"}
    }
    client = token_api(scopes=["read", "write"], all_workloads=True)
    for i in range(2):
        body = REGISTER | {"slug": f"w{i}"}
        assert client.post("/api/v1/workloads", body, format="json").status_code == 201
    response = client.post("/api/v1/workloads", REGISTER | {"slug": "w9"}, format="json")
    assert response.status_code == 429
    assert error_of(response)["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
    assert client.get("/api/v1/workloads").status_code == 200  # reads are not write-throttled
    other = token_api(scopes=["write"], all_workloads=True)
    assert other.post("/api/v1/workloads", REGISTER, format="json").status_code == 201


@pytest.fixture
def fuzz_client(owner, token_api):
    WorkloadFactory(slug="fuzz-target", owner=owner)
    return token_api(scopes=["write"], all_workloads=True)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_register_like = st.fixed_dictionaries(
    {},
    optional={key: _json for key in (*REGISTER, "data_categories")},
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_register_like | _json)
def test_no_json_body_makes_the_write_endpoints_fail_with_a_500(fuzz_client, body):
    client: APIClient = fuzz_client
    for method, url in [("post", "/api/v1/workloads"), ("patch", "/api/v1/workloads/fuzz-target")]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code in {200, 201, 400, 409}, response.content
        if response.status_code >= 400:
            error_of(response)


@pytest.mark.parametrize(
    "url, status",
    [
        ("/api/v1/workloads/a%00b", 404),  # PostgreSQL would raise on a NUL in a text lookup
        ("/api/v1/tiers/%00", 404),
        ("/api/v1/tools/%E2%80%AE", 404),
        ("/api/v1/grants/99999999999999999999999", 404),
        ("/api/v1/grants?workload=%00", 400),
        ("/api/v1/workloads?q=%00", 400),
        ("/api/v1/workloads?owner=" + "x" * 10_000, 200),
        ("/api/v1/workloads?tier=nope", 400),
        ("/api/v1/workloads?ordering=password", 400),
        ("/api/v1/workloads?unclassified=maybe", 400),
        ("/api/v1/workloads?unclassified=true", 200),
        ("/api/v1/workloads?page=%00", 400),
        ("/api/v1/workloads?page=%C2%B2", 400),
        ("/api/v1/workloads?page=0", 400),
        ("/api/v1/workloads?page=99", 404),
        ("/api/v1/workloads?page=last", 200),
        ("/api/v1/workloads?page_size=-1", 400),
        ("/api/v1/workloads?page_size=abc", 400),
        ("/api/v1/workloads?page_size=100000", 200),
        ("/api/v1/requests?view=bogus", 400),
        ("/api/v1/requests?view=awaiting", 400),
        ("/api/v1/requests?view=mine", 400),
        ("/api/v1/grants?status=pending", 400),
    ],
)
def test_hostile_urls_get_a_4xx_in_the_error_shape(token_api, url, status):
    response = token_api(all_workloads=True).get(url)
    assert response.status_code == status, response.content
    if status >= 400:
        error_of(response)
