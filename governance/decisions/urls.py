from django.urls import path

from governance.decisions import views

app_name = "decisions"

urlpatterns = [path("", views.decision_log_view, name="log")]
