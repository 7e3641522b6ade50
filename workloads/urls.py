from django.urls import path

from workloads import views

app_name = "workloads"

urlpatterns = [
    path("", views.workload_list_view, name="list"),
    path("<slug:slug>/", views.workload_detail_view, name="detail"),
]
