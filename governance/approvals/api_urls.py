from django.urls import path

from governance.approvals import api
from governance.approvals import exception_window_api as windows
from governance.approvals import session_approval_api as session_approvals

urlpatterns = [
    path("requests", api.AccessRequestListCreateApi.as_view(), name="request-list"),
    path("requests/<int:pk>", api.AccessRequestDetailApi.as_view(), name="request-detail"),
    path("requests/<int:pk>/cancel", api.AccessRequestCancelApi.as_view(), name="request-cancel"),
    path(
        "requests/<int:pk>/approve", api.AccessRequestApproveApi.as_view(), name="request-approve"
    ),
    path("requests/<int:pk>/deny", api.AccessRequestDenyApi.as_view(), name="request-deny"),
    path("exceptions", windows.RuleExceptionListApi.as_view(), name="exception-list"),
    path("exceptions/<int:pk>", windows.RuleExceptionDetailApi.as_view(), name="exception-detail"),
    path(
        "exceptions/<int:pk>/revoke",
        windows.RuleExceptionRevokeApi.as_view(),
        name="exception-revoke",
    ),
    path("session-windows", windows.SessionWindowListApi.as_view(), name="session-window-list"),
    path(
        "session-windows/<int:pk>",
        windows.SessionWindowDetailApi.as_view(),
        name="session-window-detail",
    ),
    path(
        "session-windows/<int:pk>/revoke",
        windows.SessionWindowRevokeApi.as_view(),
        name="session-window-revoke",
    ),
    path(
        "session-approvals",
        session_approvals.SessionApprovalListApi.as_view(),
        name="session-approval-list",
    ),
    path(
        "session-approvals/<int:pk>",
        session_approvals.SessionApprovalDetailApi.as_view(),
        name="session-approval-detail",
    ),
    path(
        "session-approvals/<int:pk>/revoke",
        session_approvals.SessionApprovalRevokeApi.as_view(),
        name="session-approval-revoke",
    ),
]
