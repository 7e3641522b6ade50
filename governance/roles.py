"""Roles are Django groups with explicit permissions; this table is their single source.

`roles_sync` runs after every migrate, so a new permission lands in its groups on deploy.
"""

from django.contrib.auth.models import Group, Permission

IAM_ADMIN = "iam_admin"
OWNER = "owner"
APPROVER = "approver"
REVIEWER = "reviewer"
AUDITOR = "auditor"

CONSOLE = "governance.access_console"

ROLE_PERMISSIONS: dict[str, set[str]] = {
    IAM_ADMIN: {
        CONSOLE,
        "workloads.view_all_workloads",
        "workloads.register_workload",
        "workloads.classify_workload",
        "workloads.change_workload",
        "workloads.manage_catalogue",
        "workloads.grant_entitlement",
        "governance.view_audit_log",
        "governance.manage_tokens",
        "governance.request_entitlement",
        "governance.approve_request",
        "governance.grant_exception",
        "governance.view_decisions",
        "governance.view_findings",
        "governance.triage_finding",
        "governance.reverse_containment",
        "governance.contain_finding",
        "governance.run_reevaluation",
    },
    OWNER: {
        CONSOLE,
        "workloads.register_workload",
        "workloads.change_workload",
        "governance.request_entitlement",
    },
    APPROVER: {
        CONSOLE,
        "workloads.view_all_workloads",
        "governance.approve_request",
        "governance.view_findings",
    },
    REVIEWER: {
        CONSOLE,
        "workloads.view_all_workloads",
        "governance.view_decisions",
        "governance.view_findings",
        "governance.triage_finding",
        # Tightening only: lifting a containment stays with IAM admins.
        "governance.contain_finding",
    },
    AUDITOR: {
        CONSOLE,
        "workloads.view_all_workloads",
        "governance.view_audit_log",
        "governance.view_decisions",
        "governance.view_findings",
    },
}
ROLES = tuple(ROLE_PERMISSIONS)


def roles_sync(**_kwargs) -> None:
    """Make each role group hold exactly the permissions in ROLE_PERMISSIONS."""
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for name in sorted(names):
            app_label, codename = name.split(".", 1)
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is None:
                raise LookupError(f"Role {role} names unknown permission {name}")
            permissions.append(permission)
        group.permissions.set(permissions)
