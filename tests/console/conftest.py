import pytest

HX = {"HX-Request": "true"}


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client
