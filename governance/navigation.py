"""The console's navigation, filtered by what the signed-in user may open."""

from django.urls import NoReverseMatch, reverse

# (label, url name, permission). Entries whose route is not installed are skipped.
NAVIGATION = [
    ("Dashboard", "dashboard", "governance.access_console"),
    ("Workloads", "workloads:list", "governance.access_console"),
    ("Tiers", "workloads:tiers", "governance.access_console"),
    ("Tools", "workloads:tools", "governance.access_console"),
    ("Rules", "workloads:rules", "governance.access_console"),
    ("Requests", "approvals:queue", "governance.access_console"),
    ("Findings", "findings:queue", "governance.view_findings"),
    ("Sessions", "usage:sessions", "governance.view_findings"),
    ("Decisions", "decisions:log", "governance.view_decisions"),
    ("Audit log", "audit:log", "governance.view_audit_log"),
    ("Tokens", "tokens:list", "governance.manage_tokens"),
]


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": []}
    items = []
    for label, url_name, permission in NAVIGATION:
        if not user.has_perm(permission):
            continue
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            continue
        items.append(
            {"label": label, "url": url, "active": request.path.startswith(url) and url != "/"}
        )
    return {"navigation": items}
