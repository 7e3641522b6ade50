from django.urls import include, path
from rest_framework.routers import SimpleRouter

from governance.findings import api

router = SimpleRouter(trailing_slash=False)
router.register("findings", api.FindingViewSet, basename="finding")

urlpatterns = [
    path("", include(router.urls)),
    path("findings/<int:pk>/status", api.FindingStatusApi.as_view(), name="finding-status"),
    path("findings/<int:pk>/assignee", api.FindingAssigneeApi.as_view(), name="finding-assignee"),
    path("findings/<int:pk>/comments", api.FindingCommentApi.as_view(), name="finding-comments"),
]
