"""Session approvals over REST: list and read (scoped like grants), revoke.

An approval lets one session of a workload whose sessions need approval (a containment) run
for SESSION_APPROVAL_HOURS; approved session-run requests create them. Reads take the `read`
scope or console access; an iam_admin or the workload's owner revokes (session auth).
"""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.approvals import selectors, services
from governance.approvals.exception_window_api import (
    REVOKE_ERRORS,
    REVOKED,
    ReadScopedApi,
    response_example,
)
from governance.approvals.filters import SessionApprovalFilter
from governance.approvals.serializers import RevokeInput, SessionApprovalOutput
from governance.openapi import DETAIL_ERRORS, ERROR_400, READ_ERRORS

APPROVAL_EXAMPLE = {
    "id": 5,
    "workload": "research-assistant",
    "session": "run-8f2c",
    "status": "active",
    "valid_from": "2025-03-01T10:00:00Z",
    "valid_until": "2025-03-02T10:00:00Z",
    "approved_by": "approver",
    "request": 44,
    "created_at": "2025-03-01T10:00:00Z",
    "revoked_at": None,
    "revoked_by": None,
    "revoke_reason": "",
}


@extend_schema(
    tags=["grants"],
    summary="List session approvals",
    description="Sessions approved to run while their workload's sessions need approval, for "
    "the workloads visible to the caller. `status` is as of now, as for grants.",
    responses={200: SessionApprovalOutput(many=True), **READ_ERRORS, 400: ERROR_400},
    examples=[response_example("A session approval", APPROVAL_EXAMPLE)],
)
class SessionApprovalListApi(ReadScopedApi, generics.ListAPIView):
    serializer_class = SessionApprovalOutput
    filterset_class = SessionApprovalFilter

    def get_queryset(self):
        return selectors.session_approval_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Read a session approval",
    parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
    responses={200: SessionApprovalOutput, **DETAIL_ERRORS},
    examples=[response_example("A session approval", APPROVAL_EXAMPLE)],
)
class SessionApprovalDetailApi(ReadScopedApi, generics.RetrieveAPIView):
    serializer_class = SessionApprovalOutput

    def get_queryset(self):
        return selectors.session_approval_list(user=self.request.user)


@extend_schema(
    tags=["grants"],
    summary="Revoke a session approval",
    description="An iam_admin or the workload's owner (session auth). The session's next "
    "decision is denied. 409 unless it is still in force.",
    request=RevokeInput,
    responses={200: SessionApprovalOutput, **REVOKE_ERRORS},
    examples=[
        OpenApiExample("Revoke", value={"reason": "The run is done."}, request_only=True),
        response_example("Revoked", APPROVAL_EXAMPLE | REVOKED | {"revoked_by": "owner"}),
    ],
)
class SessionApprovalRevokeApi(ReadScopedApi, APIView):
    required_scope = None
    required_permission = selectors.REQUEST

    def post(self, request, pk):
        data = RevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        approval = generics.get_object_or_404(
            selectors.session_approval_list(user=request.user), pk=pk
        )
        services.session_approval_revoke(
            approval=approval, by=request.user, reason=data.validated_data["reason"]
        )
        fresh = selectors.session_approval_list(user=request.user).get(pk=pk)
        return Response(SessionApprovalOutput(fresh).data)
