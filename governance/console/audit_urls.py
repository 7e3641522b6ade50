from django.urls import path

from governance.console import audit_views as views

app_name = "audit"
urlpatterns = [path("", views.audit_log_view, name="log")]
