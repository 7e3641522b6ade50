"""The OpenTelemetry SDK's own OTLP/HTTP exporter, pointed at a live server, end to end."""

import json

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.factories import WorkloadFactory
from workloads.models import Session, UsageEvent


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_delivers_gen_ai_spans(
    live_server, transactional_db, make_token, compression
):
    workload = WorkloadFactory(slug="support-triage")  # draft: no seeded tier needed
    token = make_token(workloads=[workload])
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {token}"},
        compression=compression,
        timeout=10,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-triage"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("agent")

    with tracer.start_as_current_span("invoke_agent support-triage") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.conversation.id", "sdk-run-1")
        agent.set_attribute(
            "gen_ai.input.messages",
            json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Triage #7"}]}]),
        )
        with tracer.start_as_current_span("chat o1") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.usage.reasoning.output_tokens", 321)
        with tracer.start_as_current_span("execute_tool ticket-read") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "ticket-read")
            tool.set_attribute("gen_ai.tool.call.arguments", '{"ticket": 7}')
        agent.set_attribute(
            "gen_ai.output.messages",
            json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Filed"}]}]),
        )
    assert provider.force_flush(10_000)
    provider.shutdown()

    session = Session.objects.get(workload=workload, external_id="sdk-run-1")
    assert session.original_request == "Triage #7"
    assert session.final_action == "Filed"
    types = sorted(UsageEvent.objects.filter(session=session).values_list("type", flat=True))
    assert types == sorted(
        ["session_start", "final_action", "session_end", "reasoning_step", "tool_call"]
    )
    step = UsageEvent.objects.get(session=session, type="reasoning_step")
    assert step.reasoning_tokens == 321
