"""Ingestion fixtures: a bound token, a poster, and a recorder in place of the broker."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from django.utils import timezone

from governance.ingest import handoff
from governance.ingest.access import ingest_caches_clear
from governance.tokens import service_token_create
from tests.factories import ClassifiedWorkloadFactory
from tests.ingest.otlp_builders import protobuf_request


@pytest.fixture(autouse=True)
def _fresh_caches():
    ingest_caches_clear()
    yield
    ingest_caches_clear()


@pytest.fixture(autouse=True)
def published(monkeypatch):
    """Evaluation messages that would have gone to the broker."""
    sent = []

    def send_task(name, kwargs=None, **options):
        sent.append((name, kwargs))

    monkeypatch.setattr(handoff.celery_app, "send_task", send_task)
    return sent


@pytest.fixture
def workload(db):
    return ClassifiedWorkloadFactory(slug="support-triage")


@pytest.fixture
def other_workload(db):
    return ClassifiedWorkloadFactory(slug="research-agent")


@pytest.fixture
def make_token(db):
    def make(*, scopes=("ingest",), workloads=(), all_workloads=False, name=None):
        make.count += 1
        return service_token_create(
            name=name or f"token-{make.count}",
            scopes=list(scopes),
            workloads=list(workloads),
            all_workloads=all_workloads,
        ).secret

    make.count = 0
    return make


@pytest.fixture
def secret(make_token, workload):
    return make_token(workloads=[workload])


@pytest.fixture
def post_events(client, secret):
    def post(events, *, token=None, raw=None, **headers):
        body = raw if raw is not None else msgspec.json.encode({"events": events})
        return client.post(
            "/api/v1/events",
            data=body,
            content_type=headers.pop("content_type", "application/json"),
            headers={"Authorization": f"Bearer {token or secret}", **headers},
        )

    return post


BASE_TIME = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def when(seconds: float = 0) -> str:
    moment = min(BASE_TIME, timezone.now() - timedelta(hours=1)) + timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


def event(
    n: int, type_: str = "reasoning_step", *, session="run-1", workload="support-triage", **extra
):
    item = {
        "event_id": f"evt-{n}",
        "type": type_,
        "session_id": session,
        "workload": workload,
        "occurred_at": when(n),
    }
    if type_ in ("tool_call", "tool_result"):
        item["tool"] = "ticket-read"
    item.update(extra)
    return item


@pytest.fixture
def export_spans(client, secret):
    """Send OTLP spans as protobuf; the export must be accepted whole."""

    def send(spans):
        response = client.post(
            "/v1/traces",
            data=protobuf_request(spans),
            content_type="application/x-protobuf",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 200, response.content
        return response

    return send
