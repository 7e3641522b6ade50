"""Findings REST endpoints: thin. Selectors read and scope (the queue page uses the same
selector and FilterSet); the writes — status, assignee, comments — go through the findings
service, which checks the permission again and audits.

Reads: a user needs view_findings, a token the `read` scope and sees the findings of the
workloads it is bound to. Writes are for signed-in users with triage_finding, never tokens.
"""

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api_common import Requirement, ScopeOrPermission, WriteThrottle
from governance.findings import selectors, services
from governance.findings.filters import FindingFilter
from governance.findings.serializers import (
    FindingAssigneeInput,
    FindingCommentInput,
    FindingCommentOutput,
    FindingDetailOutput,
    FindingOutput,
    FindingStatusInput,
)
from governance.models import Finding
from governance.openapi import DETAIL_ERRORS, ERROR_400, READ_ERRORS, WRITE_LIMITS, ErrorBody

VIEW = selectors.VIEW
TRIAGE = services.TRIAGE

_FINDING_EXAMPLE = {
    "id": 311,
    "kind": "unentitled_tool",
    "severity": "high",
    "status": "open",
    "workload": "support-triage",
    "tier": "internal-act",
    "session": 9120,
    "tool": "send-email",
    "summary": "Called send-email, which support-triage holds no grant for.",
    "evidence": [884120, 884121],
    "assignee": None,
    "occurred_at": "2025-03-04T14:02:11Z",
    "created_at": "2025-03-04T14:02:13Z",
    "updated_at": "2025-03-04T14:02:13Z",
    "resolved_at": None,
}
_DETAIL_EXAMPLE: dict[str, Any] = _FINDING_EXAMPLE | {
    "status": "acknowledged",
    "assignee": "riley",
    "updated_at": "2025-03-04T15:10:00Z",
    "details": {"signal": "no_grant", "tool": "send-email", "capability_class": "messaging"},
    "comments": [
        {
            "id": 17,
            "author": "riley",
            "body": "Owner confirms a test run; revoking the key.",
            "created_at": "2025-03-04T15:10:00Z",
        }
    ],
    "containment": [
        {
            "id": 5,
            "action": "suspend_workload",
            "workload": "support-triage",
            "grant": None,
            "tool": None,
            "limits": {},
            "reason": "Emailing customers without a grant.",
            "reverse_reason": "",
            "created_at": "2025-03-04T14:02:13Z",
            "reversed_at": None,
            "reversed_by": None,
        }
    ],
    "next_statuses": ["false_positive", "open", "resolved"],
}
_ILLEGAL = "This finding is resolved: it cannot be marked acknowledged. Reopen it first."
ERROR_409_TRANSITION = OpenApiResponse(
    ErrorBody,
    description="The finding cannot make this move from its current status.",
    examples=[
        OpenApiExample(
            "illegal_transition",
            value={
                "error": {
                    "code": "illegal_transition",
                    "message": _ILLEGAL,
                    "fields": {"status": [_ILLEGAL]},
                }
            },
        )
    ],
)


def _example(name: str, value, *, request: bool = False) -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=request, response_only=not request)


class FindingsApi:
    """What every findings endpoint shares: deny by default, throttled writes."""

    permission_classes = [ScopeOrPermission]
    throttle_classes = [WriteThrottle]
    required_scope: Requirement = "read"
    required_permission: Requirement = VIEW


@extend_schema_view(
    list=extend_schema(
        summary="List findings",
        description="Findings the caller may see, newest first (`ordering=-severity` for the "
        "most severe first). A token sees the findings of the workloads it is bound to; a "
        "user needs governance.view_findings. Filters combine with AND; an invalid value is "
        "a 400.",
        responses={200: FindingOutput(many=True), 400: ERROR_400, **READ_ERRORS},
        examples=[_example("An open finding", _FINDING_EXAMPLE)],
        tags=["findings"],
    ),
    retrieve=extend_schema(
        summary="Read a finding",
        description="With the signal that fired (`details`), the evidence event ids, comments "
        "and containment actions. 404 for a finding the caller may not see.",
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={200: FindingDetailOutput, **DETAIL_ERRORS},
        examples=[_example("An acknowledged finding", _DETAIL_EXAMPLE)],
        tags=["findings"],
    ),
)
class FindingViewSet(
    FindingsApi, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Finding.objects.none()  # for the schema; get_queryset scopes by caller
    lookup_value_regex = "[0-9]+"
    filterset_class = FindingFilter

    def get_queryset(self):
        return selectors.finding_list(user=self.request.user)

    def get_object(self):
        return selectors.finding_detail_get(user=self.request.user, pk=self.kwargs["pk"])

    def get_serializer_class(self):
        return FindingDetailOutput if self.action == "retrieve" else FindingOutput


@extend_schema(
    summary="Triage a finding",
    description="Acknowledge, resolve or mark a false positive (or reopen), with an optional "
    "comment kept on the finding; audited. Signed-in users with governance.triage_finding "
    "only (session auth, CSRF token required); service tokens are refused. Setting the "
    "status it already has changes nothing but keeps the comment, as a comment. 409 for a "
    "move the workflow does not allow "
    "(open → acknowledged → resolved | false_positive; a closed finding only reopens).",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    request=FindingStatusInput,
    responses={
        200: FindingDetailOutput,
        400: ERROR_400,
        **DETAIL_ERRORS,
        409: ERROR_409_TRANSITION,
        **WRITE_LIMITS,
    },
    examples=[
        _example(
            "Acknowledge",
            {"status": "acknowledged", "comment": "Owner confirms a test run."},
            request=True,
        ),
        _example("Acknowledged", _DETAIL_EXAMPLE),
    ],
    tags=["findings"],
)
class FindingStatusApi(FindingsApi, APIView):
    required_scope = None  # never a token
    required_permission = TRIAGE

    def post(self, request, pk: int):
        finding = selectors.finding_get(user=request.user, pk=pk)
        data = FindingStatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.finding_set_status(finding=finding, by=request.user, **data.validated_data)
        fresh = selectors.finding_detail_get(user=request.user, pk=pk)
        return Response(FindingDetailOutput(fresh).data)


class FindingWriteApi(FindingsApi, APIView):
    """Triage writes: signed-in triagers only (session auth, CSRF), never a token."""

    required_scope = None
    required_permission = TRIAGE


_WRITE_ERRORS = {400: ERROR_400, **DETAIL_ERRORS, **WRITE_LIMITS}


@extend_schema(
    summary="Assign a finding",
    description="Give the finding to someone who can triage findings (their username), or "
    "null to unassign; audited. Signed-in users with governance.triage_finding only. 400 "
    "with `fields.assignee` for an unknown user or one who cannot triage.",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    request=FindingAssigneeInput,
    responses={200: FindingDetailOutput, **_WRITE_ERRORS},
    examples=[
        _example("Assign", {"assignee": "riley"}, request=True),
        _example("Assigned", _DETAIL_EXAMPLE),
    ],
    tags=["findings"],
)
class FindingAssigneeApi(FindingWriteApi):
    def post(self, request, pk: int):
        finding = selectors.finding_get(user=request.user, pk=pk)
        data = FindingAssigneeInput(data=request.data)
        data.is_valid(raise_exception=True)
        assignee = services.triager_get(data.validated_data["assignee"])
        services.finding_assign(finding=finding, assignee=assignee, by=request.user)
        return Response(
            FindingDetailOutput(selectors.finding_detail_get(user=request.user, pk=pk)).data
        )


@extend_schema(
    summary="Comment on a finding",
    description="Add a comment to the finding's discussion; audited. Signed-in users with "
    "governance.triage_finding only. Answers 201 with the comment.",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    request=FindingCommentInput,
    responses={201: FindingCommentOutput, **_WRITE_ERRORS},
    examples=[
        _example("Comment", {"body": "Owner confirms a test run."}, request=True),
        _example("The comment", _DETAIL_EXAMPLE["comments"][0]),
    ],
    tags=["findings"],
)
class FindingCommentApi(FindingWriteApi):
    def post(self, request, pk: int):
        finding = selectors.finding_get(user=request.user, pk=pk)
        data = FindingCommentInput(data=request.data)
        data.is_valid(raise_exception=True)
        comment = services.finding_comment_add(
            finding=finding, body=data.validated_data["body"], by=request.user
        )
        return Response(FindingCommentOutput(comment).data, status=201)
