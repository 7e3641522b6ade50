from django.urls import path

from governance.findings import views

app_name = "findings"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("counts/", views.counts, name="counts"),
    path("bulk/", views.bulk_triage, name="bulk"),
    path("dashboard-panels/", views.dashboard_panels, name="dashboard_panels"),
    path("reevaluate/", views.reevaluation, name="reevaluation"),
    path("reevaluate/<int:pk>/", views.reevaluation_job, name="reevaluation_job"),
    path("containment/<int:pk>/reverse/", views.reverse_containment, name="reverse_containment"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/status/", views.set_status, name="status"),
    path("<int:pk>/assign/", views.assign, name="assign"),
    path("<int:pk>/comment/", views.comment, name="comment"),
    path("<int:pk>/contain/", views.contain, name="contain"),
    path("<int:pk>/narrow/", views.narrow, name="narrow"),
    path("lift/<slug:slug>/", views.lift, name="lift"),
]
