from django.urls import include, path
from rest_framework.routers import SimpleRouter

from governance.usage import api

router = SimpleRouter(trailing_slash=False)
router.register("sessions", api.SessionViewSet, basename="session")

urlpatterns = [
    path("", include(router.urls)),
    path("sessions/<int:pk>/events", api.SessionEventListApi.as_view(), name="session-events"),
]
