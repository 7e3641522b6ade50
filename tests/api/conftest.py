"""API test helpers: clients for a signed-in user or a service token."""

import itertools

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from governance.tokens import service_token_create

_names = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def user_api():
    """`user_api(user)`: a client signed in as `user`."""

    def make(user):
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def token_api(db):
    """`token_api(scopes=…, workloads=…, all_workloads=…)`: a client bearing a new token."""

    def make(*, scopes=("read",), workloads=(), all_workloads=False, **kwargs):
        issued = service_token_create(
            name=f"test-token-{next(_names)}",
            scopes=list(scopes),
            workloads=list(workloads),
            all_workloads=all_workloads,
            **kwargs,
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
        client.token = issued.token
        client.secret = issued.secret
        return client

    return make
