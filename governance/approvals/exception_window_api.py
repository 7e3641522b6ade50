"""Rule exceptions and session windows over REST: list and read (scoped like grants), revoke.

Reads take the `read` scope or console access. Revoking is for signed-in users (session auth):
an iam_admin revokes exceptions; an iam_admin or the workload's owner revokes session windows.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api_common import Requirement, ScopeOrPermission, WriteThrottle
from governance.approvals import selectors, services
from governance.approvals.filters import RuleExceptionFilter, SessionWindowFilter
from governance.approvals.serializers import RevokeInput, RuleExceptionOutput, SessionWindowOutput
from governance.openapi import DETAIL_ERRORS, ERROR_400, READ_ERRORS, WRITE_LIMITS, ErrorBody
from governance.roles import CONSOLE

EXCEPTION_EXAMPLE = {
    "id": 7,
    "workload": "research-assistant",
    "rule": "lethal-trifecta",
    "justification": "Code runs in a network-isolated sandbox; files are the team's own.",
    "status": "active",
    "valid_from": "2025-03-01T10:00:00Z",
    "valid_until": "2025-03-15T10:00:00Z",
    "approved_by": "iam-admin",
    "request": 42,
    "created_at": "2025-03-01T10:00:00Z",
    "revoked_at": None,
    "revoked_by": None,
    "revoke_reason": "",
}
WINDOW_EXAMPLE = {
    "id": 3,
    "workload": "research-assistant",
    "max_session_seconds": 5400,
    "max_tool_calls": 300,
    "max_reasoning_tokens": None,
    "status": "active",
    "valid_from": "2025-03-01T10:00:00Z",
    "valid_until": "2025-03-08T10:00:00Z",
    "granted_by": "approver",
    "request": 43,
    "created_at": "2025-03-01T10:00:00Z",
    "revoked_at": None,
    "revoked_by": None,
    "revoke_reason": "",
}
REVOKED = {
    "status": "revoked",
    "revoked_at": "2025-03-05T16:20:00Z",
    "revoked_by": "iam-admin",
    "revoke_reason": "The sandbox was found to reach the network.",
}
REVOKE_REQUEST = OpenApiExample(
    "Revoke",
    value={"reason": "The sandbox was found to reach the network."},
    request_only=True,
)
REVOKE_ERRORS = {
    **DETAIL_ERRORS,
    400: ERROR_400,
    **WRITE_LIMITS,
    409: OpenApiResponse(
        ErrorBody,
        description="Already revoked or expired.",
        examples=[
            OpenApiExample(
                "not_active",
                value={"error": {"code": "not_active", "message": "It is already revoked."}},
            )
        ],
    ),
}


def response_example(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=["200"])


class ReadScopedApi:
    permission_classes = [ScopeOrPermission]
    throttle_classes = [WriteThrottle]
    required_scope: Requirement = "read"
    required_permission: Requirement = CONSOLE


@extend_schema(
    tags=["grants"],
    summary="List rule exceptions",
    description="Exceptions of the workloads visible to the caller. `status` is as of now: an "
    "active exception past its end reads (and filters) as expired even before the expiry job.",
    responses={200: RuleExceptionOutput(many=True), **READ_ERRORS, 400: ERROR_400},
    examples=[response_example("An exception", EXCEPTION_EXAMPLE)],
)
class RuleExceptionListApi(ReadScopedApi, generics.ListAPIView):
    serializer_class = RuleExceptionOutput
    filterset_class = RuleExceptionFilter

    def get_queryset(self):
        return selectors.exception_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Read a rule exception",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    responses={200: RuleExceptionOutput, **DETAIL_ERRORS},
    examples=[response_example("An exception", EXCEPTION_EXAMPLE)],
)
class RuleExceptionDetailApi(ReadScopedApi, generics.RetrieveAPIView):
    serializer_class = RuleExceptionOutput

    def get_queryset(self):
        return selectors.exception_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Revoke a rule exception",
    description="iam_admin users only (session auth). The rule applies again at once: the next "
    "decision that completes the combination is denied. 409 unless it is still in force.",
    request=RevokeInput,
    responses={200: RuleExceptionOutput, **REVOKE_ERRORS},
    examples=[REVOKE_REQUEST, response_example("Revoked", EXCEPTION_EXAMPLE | REVOKED)],
)
class RuleExceptionRevokeApi(ReadScopedApi, APIView):
    required_scope = None
    required_permission = services.REVOKE_EXCEPTION

    def post(self, request, pk):
        data = RevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        exception = generics.get_object_or_404(selectors.exception_list(user=request.user), pk=pk)
        services.rule_exception_revoke(
            exception=exception, by=request.user, reason=data.validated_data["reason"]
        )
        fresh = selectors.exception_list(user=request.user).get(pk=pk)
        return Response(RuleExceptionOutput(fresh).data)


@extend_schema(
    tags=["grants"],
    summary="List session windows",
    description="Longer session windows (bigger budgets than the session policy) of the "
    "workloads visible to the caller. `status` is as of now, as for grants.",
    responses={200: SessionWindowOutput(many=True), **READ_ERRORS, 400: ERROR_400},
    examples=[response_example("A session window", WINDOW_EXAMPLE)],
)
class SessionWindowListApi(ReadScopedApi, generics.ListAPIView):
    serializer_class = SessionWindowOutput
    filterset_class = SessionWindowFilter

    def get_queryset(self):
        return selectors.session_window_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Read a session window",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    responses={200: SessionWindowOutput, **DETAIL_ERRORS},
    examples=[response_example("A session window", WINDOW_EXAMPLE)],
)
class SessionWindowDetailApi(ReadScopedApi, generics.RetrieveAPIView):
    serializer_class = SessionWindowOutput

    def get_queryset(self):
        return selectors.session_window_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Revoke a session window",
    description="An iam_admin or the workload's owner (session auth). The session policy's own "
    "limits apply again at once. 409 unless it is still in force.",
    request=RevokeInput,
    responses={200: SessionWindowOutput, **REVOKE_ERRORS},
    examples=[
        OpenApiExample(
            "Revoke", value={"reason": "The quarter-end run is done."}, request_only=True
        ),
        response_example("Revoked", WINDOW_EXAMPLE | REVOKED | {"revoked_by": "owner"}),
    ],
)
class SessionWindowRevokeApi(ReadScopedApi, APIView):
    required_scope = None
    required_permission = selectors.REQUEST

    def post(self, request, pk):
        data = RevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        extension = generics.get_object_or_404(
            selectors.session_window_list(user=request.user), pk=pk
        )
        services.session_extension_revoke(
            extension=extension, by=request.user, reason=data.validated_data["reason"]
        )
        fresh = selectors.session_window_list(user=request.user).get(pk=pk)
        return Response(SessionWindowOutput(fresh).data)
