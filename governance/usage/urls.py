from django.urls import path

from governance.usage import views

app_name = "usage"

urlpatterns = [
    path("", views.sessions, name="sessions"),
    path("<int:pk>/", views.timeline, name="timeline"),
]
