"""Catalogue pages. Included at the site root: workloads, tools and rules share a namespace."""

from django.urls import path

from workloads import recommendation_views, views

app_name = "workloads"

urlpatterns = [
    path("workloads/", views.workload_list_view, name="list"),
    path("workloads/new/", views.workload_register_view, name="register"),
    path("workloads/<str:slug>/", views.workload_detail_view, name="detail"),
    path("workloads/<str:slug>/classify/", views.workload_classify_view, name="classify"),
    path("workloads/<str:slug>/status/", views.workload_status_view, name="status"),
    path(
        "workloads/<str:slug>/session-policy/",
        views.session_policy_edit_view,
        name="session_policy",
    ),
    path("workloads/<str:slug>/grants/", views.grant_create_view, name="grant"),
    path(
        "workloads/<str:slug>/grants/<int:pk>/revoke/",
        views.grant_revoke_view,
        name="grant_revoke",
    ),
    path("grants/unused/", recommendation_views.unused_grants_view, name="unused_grants"),
    path(
        "grants/unused/<int:pk>/revoke/",
        recommendation_views.unused_grant_revoke_view,
        name="unused_grant_revoke",
    ),
    path("tiers/", views.tier_list_view, name="tiers"),
    path("tools/", views.tool_list_view, name="tools"),
    path("tools/new/", views.tool_create_view, name="tool_create"),
    path("tools/<str:slug>/edit/", views.tool_edit_view, name="tool_edit"),
    path("rules/", views.rule_list_view, name="rules"),
    path("rules/new/", views.rule_create_view, name="rule_create"),
    path("rules/<str:slug>/edit/", views.rule_edit_view, name="rule_edit"),
]
