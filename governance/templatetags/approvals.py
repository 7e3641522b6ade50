"""`{% workload_access_panel workload %}`: exceptions, session windows and requests of a
workload, with the request and revoke actions, for the workload page's grants section."""

from django import template

from governance.approvals.views import access_panel_context

register = template.Library()


@register.inclusion_tag("approvals/workload_access.html", takes_context=True)
def workload_access_panel(context, workload):
    return access_panel_context(context["request"], workload)
