from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from governance.models import AuditEvent, ServiceToken
from governance.tokens import TOKEN_PREFIX
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.django_db


def create(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_service_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_it_prints_the_token_once_and_stores_only_its_hash():
    secret, note = create("gateway", "--scopes", "read,decide", "--all-workloads")
    assert secret.startswith(TOKEN_PREFIX)
    assert len(secret) - len(TOKEN_PREFIX) >= 22  # ≥128 bits of url-safe base64
    assert secret not in note
    token = ServiceToken.objects.get(name="gateway")
    assert token.scopes == ["decide", "read"] and token.all_workloads
    # The secret is nowhere in the database, in any table.
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert not any(secret in str(value) for value in row), table
    assert bearer(secret).get("/api/v1/tiers").status_code == 200


def test_two_tokens_never_share_a_secret():
    first, _ = create("one", "--scopes", "read")
    second, _ = create("two", "--scopes", "read")
    assert first != second


def test_a_token_is_bound_to_the_named_workloads(owner):
    WorkloadFactory(slug="alpha")
    WorkloadFactory(slug="beta")
    WorkloadFactory(slug="gamma")
    secret, _ = create("pair", "--scopes", "read", "--workload", "alpha", "--workload", "beta")
    body = bearer(secret).get("/api/v1/workloads").json()
    assert [w["slug"] for w in body["results"]] == ["alpha", "beta"]


def test_scopes_are_enforced(owner):
    secret, _ = create("reader", "--scopes", "read", "--all-workloads")
    response = bearer(secret).post(
        "/api/v1/workloads",
        {
            "slug": "x",
            "name": "X",
            "purpose": "x",
            "owner": "owner",
            "model_family": "o1",
            "environment": "staging",
        },
        format="json",
    )
    assert response.status_code == 403


def test_a_token_expires():
    secret, _ = create("short", "--scopes", "read", "--expires-days", "2")
    token = ServiceToken.objects.get(name="short")
    assert timedelta(days=1) < token.expires_at - timezone.now() <= timedelta(days=2)
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        assert bearer(secret).get("/api/v1/tiers").status_code == 401


def test_revoking_stops_the_token_and_is_audited():
    secret, _ = create("leaky", "--scopes", "read")
    out = StringIO()
    call_command("revoke_service_token", "leaky", stdout=out)
    assert "Revoked" in out.getvalue()
    assert bearer(secret).get("/api/v1/tiers").status_code == 401
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.object_repr == "leaky" and event.after["revoked_at"]
    again = StringIO()
    call_command("revoke_service_token", "leaky", stdout=again)
    assert "already revoked" in again.getvalue()
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1


def test_creation_is_audited_without_the_secret(admin_user):
    WorkloadFactory(slug="alpha")
    secret, _ = create(
        "audited", "--scopes", "ingest", "--workload", "alpha", "--acts-for", "admin"
    )
    event = AuditEvent.objects.get(action="token.create")
    assert event.after["scopes"] == ["ingest"]
    assert event.after["workloads"] == ["alpha"]
    assert secret not in str(event.after)
    assert ServiceToken.objects.get(name="audited").acts_for == admin_user


def test_last_used_is_recorded_at_most_once_a_minute():
    secret, _ = create("busy", "--scopes", "read")
    client = bearer(secret)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client.get("/api/v1/tiers")
        first = ServiceToken.objects.get(name="busy").last_used_at
        assert first == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        client.get("/api/v1/tiers")
        assert ServiceToken.objects.get(name="busy").last_used_at == first
    later = start + timedelta(seconds=90)
    with time_machine.travel(later, tick=False):
        client.get("/api/v1/tiers")
        assert ServiceToken.objects.get(name="busy").last_used_at == later


@pytest.mark.parametrize(
    "args, message",
    [
        (["x", "--scopes", "read,admin"], "Unknown scopes"),
        (["x", "--scopes", ""], "at least one scope"),
        (["x", "--scopes", "read", "--workload", "nope"], "Unknown workload"),
        (["x", "--scopes", "read", "--acts-for", "ghost"], "No active user"),
        (["x", "--scopes", "read", "--expires-days", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(CommandError, match=message):
        create(*args)
    assert not ServiceToken.objects.exists()


def test_a_duplicate_name_is_refused():
    create("dup", "--scopes", "read")
    with pytest.raises(CommandError, match="exists"):
        create("dup", "--scopes", "read")


def test_workload_binding_and_all_workloads_are_exclusive():
    with pytest.raises(CommandError):
        create("x", "--scopes", "read", "--workload", "a", "--all-workloads")


def test_revoking_an_unknown_token_fails():
    with pytest.raises(CommandError, match="No token"):
        call_command("revoke_service_token", "ghost")
