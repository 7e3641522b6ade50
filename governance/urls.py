from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from governance import views
from governance.ingest.urls import otlp_urlpatterns
from governance.permissions import public

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path(
        "login/",
        public(auth_views.LoginView.as_view(template_name="registration/login.html")),
        name="login",
    ),
    path("logout/", public(auth_views.LogoutView.as_view()), name="logout"),
    path("workloads/", include("workloads.urls")),
    path("api/v1/", include("governance.api_urls")),
    path("api/schema/", public(SpectacularAPIView.as_view()), name="schema"),
    *otlp_urlpatterns,
    path("api/docs/", public(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
]
