"""Catalogue REST endpoints: thin; selectors read, services write."""

from rest_framework import viewsets

from governance.api_common import ScopeOrPermission
from governance.roles import CONSOLE
from workloads.selectors import workload_list
from workloads.serializers import WorkloadOutput


class WorkloadViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = WorkloadOutput
    lookup_field = "slug"
    permission_classes = [ScopeOrPermission]
    required_scope = "read"
    required_permission = CONSOLE

    def get_queryset(self):
        return workload_list(user=self.request.user, filters=self.request.query_params)
