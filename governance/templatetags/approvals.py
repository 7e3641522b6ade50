"""`{% workload_access_panel workload %}`: exceptions, session windows and requests of a
workload, with the request action, for the workload page's grants section."""

from django import template

from governance.approvals.selectors import workload_access

register = template.Library()


@register.inclusion_tag("approvals/workload_access.html", takes_context=True)
def workload_access_panel(context, workload):
    user = context["request"].user
    may_revoke = user.has_perm("workloads.grant_entitlement") or workload.owner_id == user.pk
    return {
        **workload_access(workload=workload),
        "workload": workload,
        "may_revoke": may_revoke,
        "may_request": workload.owner_id == user.pk
        and user.has_perm("governance.request_entitlement"),
        "csrf_token": context.get("csrf_token"),
        "request": context["request"],
    }
