"""Catalogue REST endpoints: thin. Selectors read and scope; services write.

Reads are viewsets over a selector with the shared FilterSets. The two automation writes
(register, update purpose) live on the workload routes because they share their URLs with
the reads; each is one method with its own input and output serializer and one service call.
"""

from django.contrib.auth import get_user_model
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from governance.api_common import JSONParser, Requirement, ScopeOrPermission, WriteThrottle
from governance.errors import DomainError, NotAllowed
from governance.models import ServiceToken
from governance.openapi import DETAIL_ERRORS, ERROR_400, ERROR_409, READ_ERRORS, WRITE_LIMITS
from governance.roles import CONSOLE
from workloads import services
from workloads.filters import GrantFilter, ToolFilter, WorkloadFilter
from workloads.models import CombinationRule, Entitlement, SensitivityTier, Tool, Workload
from workloads.selectors import (
    combination_rule_list,
    grant_list,
    tier_list,
    tool_list,
    workload_list,
)
from workloads.serializers import (
    CombinationRuleOutput,
    GrantOutput,
    TierOutput,
    ToolOutput,
    WorkloadDetailOutput,
    WorkloadOutput,
    WorkloadRegisterInput,
    WorkloadUpdateInput,
)

# Anything else under a detail route answers the JSON 404 (and never reaches the database:
# PostgreSQL refuses NUL bytes in text with an error, not an empty result).
SLUG_IN_URL = "[A-Za-z0-9._~-]+"
# Only an IAM admin may register a workload on someone else's behalf.
REGISTER_FOR_OTHERS = "workloads.classify_workload"

_WORKLOAD_EXAMPLE = {
    "slug": "support-triage",
    "name": "Support triage",
    "purpose": "Read incoming support tickets, look up the customer's plan in the CRM and "
    "draft a reply for a human agent to send.",
    "owner": "dana",
    "model_family": "claude-3-7-sonnet",
    "environment": "production",
    "data_categories": ["customer"],
    "status": "active",
    "tier": "internal-act",
    "classification_rationale": "Writes to the ticketing system; reads customer data.",
    "classified_at": "2025-03-01T10:00:00Z",
    "created_at": "2025-02-27T09:12:00Z",
    "updated_at": "2025-03-01T10:00:00Z",
}
_GRANT_EXAMPLE = {
    "id": 42,
    "workload": "support-triage",
    "tool": "crm-api",
    "status": "active",
    "valid_from": "2025-03-01T10:00:00Z",
    "valid_until": "2025-06-01T10:00:00Z",
    "constraints": {},
    "granted_by": "iam-admin",
    "created_at": "2025-03-01T10:00:00Z",
    "revoked_at": None,
    "revoke_reason": "",
}
_TIER_EXAMPLE = {
    "slug": "internal-read",
    "name": "Internal read",
    "rank": 20,
    "description": "Reads internal data; changes nothing.",
    "max_session_seconds": 900,
    "idle_timeout_seconds": 300,
    "max_tool_calls": 50,
    "max_reasoning_tokens": 50000,
    "loop_threshold": 3,
    "logging_level": "metadata",
    "retention_days": 90,
    "approvals_required": 1,
    "max_grant_days": 180,
    "grant_end_required": False,
}
_TOOL_EXAMPLE = {
    "slug": "web-search",
    "name": "Web search",
    "capability_class": "web_access",
    "risk": "medium",
    "mcp_server": "search.mcp.internal",
    "description": "Searches the public web.",
}
_RULE_EXAMPLE = {
    "slug": "lethal-trifecta",
    "name": "Lethal trifecta",
    "description": "Private data, untrusted content and a way out must not meet.",
    "groups": [["file_read", "data_store"], ["web_access"], ["code_execution", "messaging"]],
    "scope": "both",
    "effect": "forbid",
    "enabled": True,
}


def _example(name: str, value, *, request: bool = False, status_codes=None) -> OpenApiExample:
    return OpenApiExample(
        name,
        value=value,
        request_only=request,
        response_only=not request,
        status_codes=status_codes,
    )


class CatalogueApi:
    """What every catalogue endpoint shares: deny by default, JSON only, throttled writes."""

    permission_classes = [ScopeOrPermission]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    throttle_classes = [WriteThrottle]
    required_scope: Requirement = "read"
    required_permission: Requirement = CONSOLE


def actor_of_request(request):
    """Who a write is attributed to: the token (audited as token:<name>) or the user."""
    return request.auth if isinstance(request.auth, ServiceToken) else request.user


@extend_schema_view(
    list=extend_schema(
        summary="List workloads",
        description="Workloads visible to the caller (a token sees the workloads it is bound to).",
        responses={200: WorkloadOutput(many=True), **READ_ERRORS, 400: ERROR_400},
        examples=[_example("A workload", _WORKLOAD_EXAMPLE)],
        tags=["catalogue"],
    ),
    retrieve=extend_schema(
        summary="Read a workload",
        description="With its tier, the session limits in force and the grants valid now. "
        "404 for a workload the caller may not see.",
        responses={200: WorkloadDetailOutput, **DETAIL_ERRORS},
        examples=[
            _example(
                "A classified workload",
                _WORKLOAD_EXAMPLE
                | {
                    "tier": {"slug": "internal-act", "name": "Internal act", "rank": 30},
                    "classified_by": "iam-admin",
                    "session_policy": {
                        "max_session_seconds": 1800,
                        "idle_timeout_seconds": 600,
                        "max_tool_calls": 100,
                        "max_reasoning_tokens": 100000,
                        "loop_threshold": 3,
                        "logging_level": "full_trace",
                        "retention_days": 180,
                    },
                    "active_grants": [
                        {
                            "id": 42,
                            "tool": "crm-api",
                            "capability_class": "downstream_api",
                            "valid_from": "2025-03-01T10:00:00Z",
                            "valid_until": "2025-06-01T10:00:00Z",
                            "constraints": {},
                        }
                    ],
                },
            )
        ],
        tags=["catalogue"],
    ),
)
class WorkloadViewSet(
    CatalogueApi, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Workload.objects.none()  # for the schema; get_queryset scopes by caller
    lookup_field = "slug"
    lookup_value_regex = SLUG_IN_URL
    filter_backends = [DjangoFilterBackend]
    filterset_class = WorkloadFilter
    required_scope = {"GET": "read", "HEAD": "read", "POST": "write", "PATCH": "write"}
    required_permission = {
        "GET": CONSOLE,
        "HEAD": CONSOLE,
        "POST": "workloads.register_workload",
        "PATCH": "workloads.change_workload",
    }

    def get_queryset(self):
        qs = workload_list(user=self.request.user)
        if self.action == "retrieve":
            qs = qs.select_related("classified_by", "session_policy")
        return qs

    def get_serializer_class(self):
        return WorkloadDetailOutput if self.action == "retrieve" else WorkloadOutput

    @extend_schema(
        summary="Register a workload",
        description="Registers a draft workload; it does nothing until an IAM admin classifies "
        "it. With a service token (scope `write`, bound to every workload: a bound token "
        "gets 403) the workload belongs to the user the token acts for, or to the `owner` "
        "named, who must be an active user who may own workloads (400 otherwise); naming "
        "another owner than the one it acts for needs that user to be an IAM admin.",
        request=WorkloadRegisterInput,
        responses={
            201: WorkloadOutput,
            400: ERROR_400,
            **READ_ERRORS,
            409: ERROR_409,
            **WRITE_LIMITS,
        },
        examples=[
            _example(
                "Register",
                {
                    "slug": "ticket-triage",
                    "name": "Ticket triage",
                    "purpose": "Triage inbound support tickets and draft replies.",
                    "owner": "dana",
                    "model_family": "claude-3-7-sonnet",
                    "environment": "production",
                    "data_categories": ["customer"],
                },
                request=True,
            ),
            _example(
                "Registered",
                _WORKLOAD_EXAMPLE
                | {"status": "draft", "tier": None, "classification_rationale": ""}
                | {"classified_at": None},
                status_codes=["201"],
            ),
        ],
        tags=["catalogue"],
    )
    def create(self, request):
        data = WorkloadRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        owner = self._owner_for_registration(fields.pop("owner", None))
        workload = services.workload_register(by=actor_of_request(request), owner=owner, **fields)
        return Response(WorkloadOutput(workload).data, status=status.HTTP_201_CREATED)

    def _owner_for_registration(self, username: str | None):
        token = self.request.auth
        if isinstance(token, ServiceToken):
            return self._owner_for_token(token, username)
        user = self.request.user
        if not username or username == user.get_username():
            return user
        if not user.has_perm(REGISTER_FOR_OTHERS):
            raise NotAllowed("Only an IAM admin may register a workload for someone else.")
        return self._active_user(username)

    def _owner_for_token(self, token: ServiceToken, username: str | None):
        """A token registers as the user it acts for would, and only when it is not bound:
        a bound token could not see or report for what it registered."""
        if not token.all_workloads:
            raise NotAllowed(
                "A token bound to workloads cannot register new ones: it could not act for "
                "them. Use a token for every workload.",
                code="token_bound",
            )
        acting = token.acts_for
        if acting is not None:
            if not username:
                username = acting.get_username()
            elif username != acting.get_username() and not acting.has_perm(REGISTER_FOR_OTHERS):
                raise NotAllowed(
                    f"This token acts for {acting.get_username()}, who may not register a "
                    "workload for someone else."
                )
        elif not username:
            raise DomainError("Name the owner of the workload.", field="owner", code="required")
        # Whether they may own workloads, the service checks for every caller.
        return self._active_user(username)

    @staticmethod
    def _active_user(username: str):
        owner = get_user_model().objects.filter(username=username, is_active=True).first()
        if owner is None:
            raise DomainError(f"No active user {username!r}.", field="owner", code="unknown")
        return owner

    @extend_schema(
        summary="Update a workload's name or purpose",
        description="Only `name` and `purpose` may change here; owner, status and tier are "
        "read-only (classification happens in the console).",
        request=WorkloadUpdateInput,
        responses={200: WorkloadOutput, 400: ERROR_400, **DETAIL_ERRORS, **WRITE_LIMITS},
        examples=[
            _example(
                "New purpose",
                {"purpose": "Triage tickets; never reply to customers directly."},
                request=True,
            ),
            _example(
                "Updated",
                _WORKLOAD_EXAMPLE
                | {"purpose": "Triage tickets; never reply to customers directly."},
            ),
        ],
        tags=["catalogue"],
    )
    def partial_update(self, request, slug=None):
        data = WorkloadUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        workload = services.workload_update(
            workload=self.get_object(), by=actor_of_request(request), **data.validated_data
        )
        return Response(WorkloadOutput(workload).data)


@extend_schema_view(
    list=extend_schema(
        summary="List sensitivity tiers",
        description="Ordered by rank; each carries the defaults it imposes.",
        responses={200: TierOutput(many=True), **READ_ERRORS},
        examples=[_example("A tier", _TIER_EXAMPLE)],
        tags=["catalogue"],
    ),
    retrieve=extend_schema(
        summary="Read a sensitivity tier",
        responses={200: TierOutput, **DETAIL_ERRORS},
        examples=[_example("A tier", _TIER_EXAMPLE)],
        tags=["catalogue"],
    ),
)
class TierViewSet(CatalogueApi, viewsets.ReadOnlyModelViewSet):
    queryset = SensitivityTier.objects.none()
    serializer_class = TierOutput
    lookup_field = "slug"
    lookup_value_regex = SLUG_IN_URL

    def get_queryset(self):
        return tier_list()


@extend_schema_view(
    list=extend_schema(
        summary="List tools",
        responses={200: ToolOutput(many=True), **READ_ERRORS, 400: ERROR_400},
        examples=[_example("A tool", _TOOL_EXAMPLE)],
        tags=["catalogue"],
    ),
    retrieve=extend_schema(
        summary="Read a tool",
        responses={200: ToolOutput, **DETAIL_ERRORS},
        examples=[_example("A tool", _TOOL_EXAMPLE)],
        tags=["catalogue"],
    ),
)
class ToolViewSet(CatalogueApi, viewsets.ReadOnlyModelViewSet):
    queryset = Tool.objects.none()
    serializer_class = ToolOutput
    lookup_field = "slug"
    lookup_value_regex = SLUG_IN_URL
    filter_backends = [DjangoFilterBackend]
    filterset_class = ToolFilter

    def get_queryset(self):
        return tool_list()


@extend_schema_view(
    list=extend_schema(
        summary="List combination rules",
        responses={200: CombinationRuleOutput(many=True), **READ_ERRORS},
        examples=[_example("The lethal trifecta", _RULE_EXAMPLE)],
        tags=["catalogue"],
    ),
    retrieve=extend_schema(
        summary="Read a combination rule",
        responses={200: CombinationRuleOutput, **DETAIL_ERRORS},
        examples=[_example("The lethal trifecta", _RULE_EXAMPLE)],
        tags=["catalogue"],
    ),
)
class CombinationRuleViewSet(CatalogueApi, viewsets.ReadOnlyModelViewSet):
    queryset = CombinationRule.objects.none()
    serializer_class = CombinationRuleOutput
    lookup_field = "slug"
    lookup_value_regex = SLUG_IN_URL

    def get_queryset(self):
        return combination_rule_list()


@extend_schema_view(
    list=extend_schema(
        summary="List grants",
        description="Grants of the workloads visible to the caller. `status` is as of now: an "
        "active grant past its end reads (and filters) as expired even before the expiry job.",
        responses={200: GrantOutput(many=True), **READ_ERRORS, 400: ERROR_400},
        examples=[_example("A grant", _GRANT_EXAMPLE)],
        tags=["catalogue"],
    ),
    retrieve=extend_schema(
        summary="Read a grant",
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={200: GrantOutput, **DETAIL_ERRORS},
        examples=[_example("A grant", _GRANT_EXAMPLE)],
        tags=["catalogue"],
    ),
)
class GrantViewSet(CatalogueApi, viewsets.ReadOnlyModelViewSet):
    queryset = Entitlement.objects.none()
    serializer_class = GrantOutput
    lookup_value_regex = "[0-9]+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = GrantFilter

    def get_queryset(self):
        return grant_list(user=self.request.user)
