from django.urls import path

from governance.approvals import api

urlpatterns = [
    path("requests", api.AccessRequestListCreateApi.as_view(), name="request-list"),
    path("requests/<int:pk>", api.AccessRequestDetailApi.as_view(), name="request-detail"),
    path("requests/<int:pk>/cancel", api.AccessRequestCancelApi.as_view(), name="request-cancel"),
    path(
        "requests/<int:pk>/approve", api.AccessRequestApproveApi.as_view(), name="request-approve"
    ),
    path("requests/<int:pk>/deny", api.AccessRequestDenyApi.as_view(), name="request-deny"),
]
