"""Sessions REST endpoints: thin reads over the same selectors as the sessions pages.

A user needs governance.view_findings (sessions are review material), a token the `read`
scope, and sees the sessions of the workloads it is bound to. Event content (reasoning
text, tool results, prompts) is shown only for workloads whose logging level is full_trace.
"""

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, viewsets
from rest_framework.response import Response

from governance.api_common import ScopeOrPermission
from governance.findings import selectors
from governance.openapi import DETAIL_ERRORS, ERROR_400, READ_ERRORS
from governance.usage.filters import SessionFilter
from governance.usage.serializers import SessionDetailOutput, SessionOutput, UsageEventOutput
from workloads.models import Session, UsageEvent

_SESSION = {
    "id": 9120,
    "external_id": "run-2025-03-04-0012",
    "workload": "support-triage",
    "source": "native",
    "state": "ended",
    "started_at": "2025-03-04T14:01:58Z",
    "last_event_at": "2025-03-04T14:02:40Z",
    "ended_at": "2025-03-04T14:02:40Z",
}
_EVENT = {
    "id": 884121,
    "event_id": "evt-7f3a",
    "type": "tool_call",
    "occurred_at": "2025-03-04T14:02:11Z",
    "received_at": "2025-03-04T14:02:12Z",
    "tool": "send-email",
    "tool_call_id": "call_01",
    "arguments_hash": "9f2c1d0e6b8a4c3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f",
    "input_tokens": 0,
    "output_tokens": 0,
    "reasoning_tokens": 0,
    "duration_ms": 312,
    "attributes": {"gen_ai.request.model": "o1"},
    "content": None,
    "evaluated": True,
}


def _example(name: str, value) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True)


class SessionsApi:
    permission_classes = [ScopeOrPermission]
    required_scope = "read"
    required_permission = selectors.VIEW


@extend_schema_view(
    list=extend_schema(
        summary="List sessions",
        description="Agent sessions the caller may see, newest first, with their event and "
        "finding counts. `state=open` for sessions with no end reported.",
        responses={200: SessionOutput(many=True), 400: ERROR_400, **READ_ERRORS},
        examples=[_example("A session", _SESSION | {"event_count": 14, "finding_count": 1})],
        tags=["sessions"],
    ),
    retrieve=extend_schema(
        summary="Read a session",
        description="The original request, the final action, times, counts and the ids of the "
        "findings it raised. 404 for a session the caller may not see.",
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={200: SessionDetailOutput, **DETAIL_ERRORS},
        examples=[
            _example(
                "An ended session",
                _SESSION
                | {
                    "original_request": "Summarise ticket 4411 and draft a reply.",
                    "final_action": "Drafted a reply to ticket 4411 and emailed the customer.",
                    "duration_seconds": 42.0,
                    "counts": {
                        "events": 14,
                        "events_by_type": {
                            "session_start": 1,
                            "reasoning_step": 6,
                            "tool_call": 3,
                            "tool_result": 2,
                            "final_action": 1,
                            "session_end": 1,
                        },
                        "tool_calls": 3,
                        "input_tokens": 5120,
                        "output_tokens": 880,
                        "reasoning_tokens": 12400,
                    },
                    "findings": [311],
                },
            )
        ],
        tags=["sessions"],
    ),
)
class SessionViewSet(
    SessionsApi, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Session.objects.none()  # for the schema; get_queryset scopes by caller
    lookup_value_regex = "[0-9]+"
    filterset_class = SessionFilter

    def get_queryset(self):
        return selectors.session_list(user=self.request.user)

    def get_serializer_class(self):
        return SessionDetailOutput if self.action == "retrieve" else SessionOutput

    def retrieve(self, request, pk=None):
        session = selectors.session_get(user=request.user, pk=pk)
        context = {
            "summary": selectors.session_summary(session=session),
            "full_trace": selectors.session_logs_content(session),
        }
        return Response(SessionDetailOutput(session, context=context).data)


@extend_schema(
    summary="A session's events",
    description="The usage events of one session in time order, paginated. `content` is null "
    "unless the workload's logging level is full_trace. 404 for a session the caller may not "
    "see.",
    responses={200: UsageEventOutput(many=True), **DETAIL_ERRORS},
    examples=[_example("A tool call", _EVENT)],
    tags=["sessions"],
)
class SessionEventListApi(SessionsApi, generics.ListAPIView):
    serializer_class = UsageEventOutput
    filter_backends: list[type] = []  # the session is the filter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return UsageEvent.objects.none()
        self.session = selectors.session_get(user=self.request.user, pk=self.kwargs["pk"])
        self.full_trace = selectors.session_logs_content(self.session)
        events = selectors.session_events(session=self.session)
        return events if self.full_trace else events.defer("content")

    def get_serializer_context(self):
        return super().get_serializer_context() | {"full_trace": getattr(self, "full_trace", False)}
