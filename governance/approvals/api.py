"""Access-request REST endpoints: thin; selectors read, services write.

Tokens with the write scope file and cancel requests for a named owner; deciding is for
approver users signed in to the console (session auth), never for tokens.
"""

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api_common import ScopeOrPermission, WriteThrottle
from governance.approvals import selectors, services
from governance.approvals.filters import AccessRequestFilter
from governance.approvals.serializers import (
    AccessRequestInput,
    AccessRequestOutput,
    ApproveInput,
    CancelInput,
    DenyInput,
)
from governance.errors import DomainError
from governance.openapi import DETAIL_ERRORS, ERROR_400, READ_ERRORS, WRITE_LIMITS
from governance.roles import CONSOLE
from governance.tokens import ServicePrincipal
from workloads.models import Tool
from workloads.selectors import workloads_visible_to

ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object"},
            },
        }
    },
}
NOT_PENDING = OpenApiExample(
    "Not pending",
    value={"error": {"code": "not_pending", "message": "The request is already approved."}},
    response_only=True,
    status_codes=["409"],
)
BLOCKED = OpenApiExample(
    "Blocked combination",
    value={
        "error": {
            "code": "rule_violation",
            "message": "Blocked by rule No exfiltration (no-exfiltration): this combination "
            "is forbidden.",
            "rule": "no-exfiltration",
        }
    },
    response_only=True,
    status_codes=["422"],
)
ALREADY_PENDING = OpenApiExample(
    "Already pending",
    value={
        "error": {
            "code": "already_pending",
            "message": "Request #42 already asks for this and is pending: approve, deny or "
            "cancel it rather than filing it again.",
            "request": 42,
        }
    },
    response_only=True,
    status_codes=["409"],
)
REQUEST_EXAMPLE = OpenApiExample(
    "Pending tools request",
    value={
        "id": 42,
        "workload": "research-assistant",
        "kind": "tools",
        "tools": ["code-exec", "file-read", "web-search"],
        "justification": "Analyse uploaded datasets with fresh web context.",
        "duration_days": 14,
        "valid_until": None,
        "max_session_seconds": None,
        "max_tool_calls": None,
        "max_reasoning_tokens": None,
        "status": "pending",
        "requested_by": "owner",
        "created_at": "2025-03-01T09:00:00Z",
        "expires_at": "2025-03-08T09:00:00Z",
        "decided_at": None,
        "decision_reason": "",
        "impact": {
            "forbidden": [],
            "exceptions_needed": [
                {
                    "slug": "lethal-trifecta",
                    "name": "Lethal trifecta",
                    "effect": "exception_required",
                }
            ],
            "exceptions_in_force": [],
            "redundant_grants": [],
            "approvals_required": 2,
            "blocked": False,
        },
        "steps": [
            {
                "position": 1,
                "kind": "approval",
                "rules": [],
                "reason": "Required by the tier",
                "decided_by": "approver",
                "decided_at": "2025-03-01T10:00:00Z",
            },
            {
                "position": 2,
                "kind": "approval",
                "rules": [],
                "reason": "Required by the tier",
                "decided_by": None,
                "decided_at": None,
            },
            {
                "position": 3,
                "kind": "exception",
                "rules": ["lethal-trifecta"],
                "reason": "Exception to Lethal trifecta (iam_admin, with justification)",
                "decided_by": None,
                "decided_at": None,
            },
        ],
        "decisions": [
            {
                "approver": "approver",
                "verdict": "approve",
                "comment": "Scoped to the sandbox.",
                "justification": "",
                "created_at": "2025-03-01T10:00:00Z",
            }
        ],
    },
    response_only=True,
)


PERSONAL_VIEWS = ("awaiting", "mine")


class _RequestApi:
    permission_classes = [ScopeOrPermission]
    throttle_classes = [WriteThrottle]  # filing and deciding, like every other API write
    # Set by the DRF view this is mixed into.
    request: Request
    kwargs: dict[str, Any]

    def get_object(self):
        return selectors.request_get(user=self.request.user, pk=self.kwargs["pk"])


@extend_schema(tags=["requests"])
@extend_schema(
    methods=["GET"],
    examples=[REQUEST_EXAMPLE],
    parameters=[
        OpenApiParameter(
            "view",
            str,
            enum=list(PERSONAL_VIEWS),
            description="A person's queue: `awaiting` (requests waiting on your decision) or "
            "`mine` (filed by you or for your workloads). Not for tokens (400).",
        )
    ],
    responses={200: AccessRequestOutput(many=True), 400: ERROR_400, **READ_ERRORS},
)
class AccessRequestListCreateApi(_RequestApi, generics.ListAPIView):
    """List the requests you may see (`view=awaiting` for the ones waiting on you), or file one."""

    serializer_class = AccessRequestOutput
    filterset_class = AccessRequestFilter
    required_scope = {"GET": "read", "POST": "write"}
    required_permission = {"GET": CONSOLE, "POST": selectors.REQUEST}

    def get_queryset(self):
        view = self.request.query_params.get("view", "")
        if view not in ("", *PERSONAL_VIEWS):
            raise exceptions.ValidationError({"view": ["Use awaiting or mine."]})
        if view and isinstance(self.request.user, ServicePrincipal):
            # A token is nobody's approver and files nothing of its own: its "awaiting" or
            # "mine" would silently be every request.
            raise exceptions.ValidationError({"view": ["A token has no personal queue."]})
        return selectors.request_list(user=self.request.user, filters={"view": view})

    @extend_schema(
        request=AccessRequestInput,
        responses={
            201: AccessRequestOutput,
            **READ_ERRORS,
            403: OpenApiResponse(ERROR, description="Not the workload's owner"),
            404: OpenApiResponse(ERROR, description="No such workload, or not visible to you"),
            400: OpenApiResponse(
                ERROR,
                description="Invalid fields; for a token, `on_behalf_of` naming no active user "
                "(`unknown_user`) or missing while the token acts for nobody",
            ),
            409: OpenApiResponse(
                ERROR,
                description="The workload cannot take this request now: unclassified, "
                "suspended or retired, or (session_run) its sessions need no approval, or the "
                "session is already approved; or `already_pending`: a pending request of the "
                "workload already asks for the same (the same tool set, the same window limits, "
                "or the same session, whatever its justification or duration), named in "
                "`request`",
            ),
            422: OpenApiResponse(ERROR, description="A forbid rule blocks the combination"),
            **WRITE_LIMITS,
        },
        examples=[
            OpenApiExample(
                "Tools for a boundary-crossing workload",
                value={
                    "workload": "research-assistant",
                    "tools": ["web-search", "file-read", "code-exec"],
                    "justification": "Analyse uploaded datasets with fresh web context.",
                    "duration_days": 14,
                },
                request_only=True,
            ),
            OpenApiExample(
                "A longer session window, filed by a token for its owner",
                value={
                    "workload": "research-assistant",
                    "kind": "session_window",
                    "max_session_seconds": 5400,
                    "max_tool_calls": 300,
                    "justification": "Quarter-end reconciliation runs longer.",
                    "duration_days": 7,
                    "on_behalf_of": "owner",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Leave to run one session while the workload's sessions need approval",
                value={
                    "workload": "research-assistant",
                    "kind": "session_run",
                    "session": "run-8f2c",
                    "justification": "The nightly reconciliation; the loop that raised the "
                    "finding is fixed in this build.",
                },
                request_only=True,
            ),
            REQUEST_EXAMPLE,
            BLOCKED,
            ALREADY_PENDING,
        ],
    )
    def post(self, request):
        data = AccessRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        workload = workloads_visible_to(request.user).filter(slug=values["workload"]).first()
        if workload is None:
            raise DomainError("No such workload.", field="workload", code="not_found", status=404)
        tools = list(Tool.objects.filter(slug__in=values["tools"]))
        unknown = sorted(set(values["tools"]) - {t.slug for t in tools})
        if unknown:
            raise DomainError(f"Unknown tools: {', '.join(unknown)}", field="tools")
        by, requested_by = selectors.request_filer(
            user=request.user, on_behalf_of=values.get("on_behalf_of")
        )
        created = services.access_request_create(
            by=by,
            requested_by=requested_by,
            workload=workload,
            kind=values["kind"],
            tools=tools,
            justification=values["justification"],
            duration_days=values.get("duration_days"),
            valid_until=values.get("valid_until"),
            session_limits={
                name: values.get(name)
                for name in ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")
            },
            session=values.get("session", ""),
        )
        output = AccessRequestOutput(
            selectors.request_get(user=request.user, pk=created.pk)
            if not isinstance(request.user, ServicePrincipal)
            else created
        )
        return Response(output.data, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["requests"],
    examples=[REQUEST_EXAMPLE],
    responses={200: AccessRequestOutput, **DETAIL_ERRORS},
)
class AccessRequestDetailApi(_RequestApi, generics.RetrieveAPIView):
    """One request with its steps and decisions (404 if you may not see it)."""

    serializer_class = AccessRequestOutput
    required_scope = "read"
    required_permission = CONSOLE


def _decided(view, request, service, payload):
    access_request = view.get_object()
    result = service(access_request=access_request, **payload)
    fresh = selectors.request_get(user=request.user, pk=result.pk)
    return Response(AccessRequestOutput(fresh).data)


@extend_schema(
    tags=["requests"],
    request=CancelInput,
    responses={
        200: AccessRequestOutput,
        **DETAIL_ERRORS,
        400: ERROR_400,
        403: OpenApiResponse(ERROR),
        409: OpenApiResponse(ERROR, description="No longer pending"),
        **WRITE_LIMITS,
    },
    examples=[
        OpenApiExample("Cancel", value={"reason": "No longer needed."}, request_only=True),
        NOT_PENDING,
        REQUEST_EXAMPLE,
    ],
)
class AccessRequestCancelApi(_RequestApi, APIView):
    """Withdraw a pending request (its requester or the workload's owner)."""

    required_scope = "write"
    required_permission = selectors.REQUEST

    def post(self, request, pk):
        data = CancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        access_request = self.get_object()
        by = request.user.token if isinstance(request.user, ServicePrincipal) else request.user
        result = services.access_request_cancel(
            access_request=access_request, by=by, reason=data.validated_data.get("reason", "")
        )
        fresh = selectors.request_get(user=request.user, pk=result.pk)
        return Response(AccessRequestOutput(fresh).data)


@extend_schema(
    tags=["requests"],
    request=ApproveInput,
    responses={
        200: AccessRequestOutput,
        **DETAIL_ERRORS,
        400: ERROR_400,
        403: OpenApiResponse(ERROR, description="Requester, owner or not an approver"),
        409: OpenApiResponse(
            ERROR,
            description="No longer pending, already decided by you, past its deadline "
            "(`request_expired`), or the workload suspended or retired (`workload_not_active`)",
        ),
        422: OpenApiResponse(ERROR, description="A combination rule blocks the grant"),
        **WRITE_LIMITS,
    },
    examples=[
        OpenApiExample("Approve", value={"comment": "Scoped to the sandbox."}, request_only=True),
        OpenApiExample(
            "Approve the exception (iam_admin)",
            value={
                "comment": "Sandboxed runner.",
                "justification": "Code runs in a network-isolated sandbox; web content is "
                "read-only and files are the team's own datasets.",
            },
            request_only=True,
        ),
        NOT_PENDING,
        REQUEST_EXAMPLE,
        BLOCKED,
    ],
)
class AccessRequestApproveApi(_RequestApi, APIView):
    """Approve one step (session auth, approvers only). The last step creates the grants."""

    required_permission = selectors.APPROVE

    def post(self, request, pk):
        data = ApproveInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _decided(
            self,
            request,
            services.access_request_approve,
            {"by": request.user, **data.validated_data},
        )


@extend_schema(
    tags=["requests"],
    request=DenyInput,
    responses={
        200: AccessRequestOutput,
        **DETAIL_ERRORS,
        400: ERROR_400,
        403: OpenApiResponse(ERROR),
        409: OpenApiResponse(ERROR, description="No longer pending"),
        **WRITE_LIMITS,
    },
    examples=[
        OpenApiExample(
            "Deny", value={"comment": "Use the read-only API instead."}, request_only=True
        ),
        NOT_PENDING,
        REQUEST_EXAMPLE,
    ],
)
class AccessRequestDenyApi(_RequestApi, APIView):
    """Deny a request with a reason (session auth, approvers only)."""

    required_permission = selectors.APPROVE

    def post(self, request, pk):
        data = DenyInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _decided(
            self,
            request,
            services.access_request_deny,
            {"by": request.user, "comment": data.validated_data["comment"]},
        )


__all__ = [
    "AccessRequestApproveApi",
    "AccessRequestCancelApi",
    "AccessRequestDenyApi",
    "AccessRequestDetailApi",
    "AccessRequestListCreateApi",
]
