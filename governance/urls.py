from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from governance import views
from governance.auth_views import LoginView, PasswordChangeView
from governance.ingest.urls import otlp_urlpatterns
from governance.permissions import public, requires
from governance.roles import CONSOLE

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", public(LoginView.as_view()), name="login"),
    path("logout/", public(auth_views.LogoutView.as_view()), name="logout"),
    path("password/", requires(CONSOLE)(PasswordChangeView.as_view()), name="password_change"),
    path("", include("workloads.urls")),
    path("audit/", include("governance.console.audit_urls")),
    path("tokens/", include("governance.console.token_urls")),
    path("requests/", include("governance.approvals.urls")),
    path("decisions/", include("governance.decisions.urls")),
    path("findings/", include("governance.findings.urls")),
    path("sessions/", include("governance.usage.urls")),
    path("api/v1/", include("governance.api_urls")),
    path("api/schema/", public(SpectacularAPIView.as_view()), name="schema"),
    *otlp_urlpatterns,
    path(
        "api/docs/", public(SpectacularSwaggerSplitView.as_view(url_name="schema")), name="api-docs"
    ),
]
handler404 = "governance.api_common.not_found"
handler500 = "governance.api_common.server_failed"
