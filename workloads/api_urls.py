from django.urls import include, path
from rest_framework.routers import SimpleRouter

from workloads import api

router = SimpleRouter(trailing_slash=False)
router.register("workloads", api.WorkloadViewSet, basename="workload")

urlpatterns = [path("", include(router.urls))]
