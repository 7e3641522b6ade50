from django.urls import path

from governance.approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue_view, name="queue"),
    path("new/", views.new_view, name="new"),
    path("impact/", views.impact_view, name="impact"),
    path("bulk/", views.bulk_view, name="bulk"),
    path("<int:pk>/", views.detail_view, name="detail"),
    path("<int:pk>/decide/", views.decide_view, name="decide"),
    path("<int:pk>/cancel/", views.cancel_view, name="cancel"),
    path("grants/<int:pk>/revoke/", views.grant_revoke_view, name="grant_revoke"),
    path("exceptions/<int:pk>/revoke/", views.exception_revoke_view, name="exception_revoke"),
    path("session-windows/<int:pk>/revoke/", views.window_revoke_view, name="window_revoke"),
    path(
        "session-approvals/<int:pk>/revoke/",
        views.session_approval_revoke_view,
        name="session_approval_revoke",
    ),
]
