from django.urls import include, path
from rest_framework.routers import SimpleRouter

from workloads import api

router = SimpleRouter(trailing_slash=False)
router.register("workloads", api.WorkloadViewSet, basename="workload")
router.register("tiers", api.TierViewSet, basename="tier")
router.register("tools", api.ToolViewSet, basename="tool")
router.register("rules", api.CombinationRuleViewSet, basename="rule")
router.register("grants", api.GrantViewSet, basename="grant")

urlpatterns = [path("", include(router.urls))]
