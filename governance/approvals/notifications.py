"""Approval emails: approvers on new requests and before expiry, requesters on decisions,
owners before a grant, a rule exception or a session window ends. Each function takes ids,
loads what it needs, returns the count."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, mailers
from django.db.models import Q
from django.urls import reverse

from governance.models import AccessRequest
from workloads.models import Entitlement, RuleException, SessionExtension

SUBJECT_PREFIX = "[Mandate] "


def _link(path: str) -> str:
    base = settings.MANDATE_BASE_URL.rstrip("/")
    return f"{base}{path}"


def _approvers(req: AccessRequest):
    """Active users who may approve, except the requester and the owner."""
    User = get_user_model()
    by_group = Q(
        groups__permissions__codename="approve_request",
        groups__permissions__content_type__app_label="governance",
    )
    by_user = Q(
        user_permissions__codename="approve_request",
        user_permissions__content_type__app_label="governance",
    )
    return (
        User.objects.filter(by_group | by_user, is_active=True)
        .exclude(pk__in=[req.requested_by_id, req.workload.owner_id])
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


def _describe(req: AccessRequest) -> str:
    if req.kind == AccessRequest.Kind.TOOLS:
        return "tools " + ", ".join(t.slug for t in req.tools.order_by("slug"))
    if req.kind == AccessRequest.Kind.SESSION_RUN:
        return (
            f"leave to run session {req.session} for {req.session_approval_hours} hours "
            "while the workload's sessions need approval"
        )
    limits = [
        f"{name.replace('_', ' ')} {getattr(req, name)}"
        for name in ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")
        if getattr(req, name) is not None
    ]
    return "a longer session window (" + ", ".join(limits) + ")"


def _send(messages: list[EmailMessage]) -> int:
    if not messages:
        return 0
    return mailers.default.send_messages(messages) or 0


def _load(request_id: int) -> AccessRequest | None:
    return (
        AccessRequest.objects.select_related("workload__tier", "workload__owner", "requested_by")
        .filter(pk=request_id)
        .first()
    )


def notify_request_filed(request_id: int) -> int:
    req = _load(request_id)
    if req is None or req.status != AccessRequest.Status.PENDING:
        return 0
    impact = req.impact or {}
    rules = [hit["name"] for hit in impact.get("exceptions_needed", [])]
    lines = [
        f"{req.requested_by.get_username()} asks for {_describe(req)} "
        f"for workload {req.workload.slug} ({req.workload.tier}).",
        "",
        f"Justification: {req.justification}",
        f"Approvals needed: {req.steps.count()}",
    ]
    if rules:
        lines.append(f"Needs an iam_admin exception to: {', '.join(rules)}")
    lines += ["", f"Decide: {_link(reverse('approvals:detail', args=[req.pk]))}"]
    subject = f"{SUBJECT_PREFIX}Request #{req.pk}: {req.workload.slug} asks for access"
    return _send([EmailMessage(subject, "\n".join(lines), to=[u.email]) for u in _approvers(req)])


def notify_request_reminder(request_id: int) -> int:
    req = _load(request_id)
    if req is None or req.status != AccessRequest.Status.PENDING:
        return 0
    decided = set(req.decisions.values_list("approver_id", flat=True))
    subject = f"{SUBJECT_PREFIX}Reminder: request #{req.pk} expires soon"
    body = (
        f"Request #{req.pk} ({_describe(req)} for {req.workload.slug}) still waits for a "
        f"decision and expires at {req.expires_at:%Y-%m-%d %H:%M} UTC.\n\n"
        f"Decide: {_link(reverse('approvals:detail', args=[req.pk]))}"
    )
    return _send(
        [EmailMessage(subject, body, to=[u.email]) for u in _approvers(req) if u.pk not in decided]
    )


def notify_request_decided(request_id: int) -> int:
    req = _load(request_id)
    if req is None or req.status == AccessRequest.Status.PENDING:
        return 0
    recipients = {req.requested_by.email, req.workload.owner.email} - {""}
    subject = f"{SUBJECT_PREFIX}Request #{req.pk} {req.status}"
    lines = [f"Your request for {_describe(req)} for {req.workload.slug} was {req.status}."]
    if req.decision_reason:
        lines += ["", f"Reason: {req.decision_reason}"]
    if req.status == AccessRequest.Status.APPROVED:
        for grant in req.grants.select_related("tool"):
            until = f"{grant.valid_until:%Y-%m-%d %H:%M} UTC" if grant.valid_until else "no end"
            lines.append(f"Granted {grant.tool.slug}, valid until {until}.")
    lines += ["", _link(reverse("approvals:detail", args=[req.pk]))]
    return _send([EmailMessage(subject, "\n".join(lines), to=sorted(recipients))])


def notify_grant_expiring(grant_id: int) -> int:
    grant = (
        Entitlement.objects.select_related("workload__owner", "tool").filter(pk=grant_id).first()
    )
    if grant is None or grant.status != Entitlement.Status.ACTIVE or not grant.workload.owner.email:
        return 0
    subject = f"{SUBJECT_PREFIX}Grant of {grant.tool.slug} to {grant.workload.slug} ends soon"
    body = (
        f"The grant of {grant.tool.slug} to {grant.workload.slug} ends at "
        f"{grant.valid_until:%Y-%m-%d %H:%M} UTC. File a new request before then if the "
        f"workload still needs it.\n\n"
        f"{_link(reverse('approvals:new') + '?workload=' + grant.workload.slug)}"
    )
    return _send([EmailMessage(subject, body, to=[grant.workload.owner.email])])


def _request_again(workload) -> str:
    return _link(reverse("approvals:new") + "?workload=" + workload.slug)


def notify_exception_expiring(exception_id: int) -> int:
    exception = (
        RuleException.objects.select_related("workload__owner", "rule")
        .filter(pk=exception_id)
        .first()
    )
    if exception is None or exception.status != RuleException.Status.ACTIVE:
        return 0
    owner = exception.workload.owner
    if not owner.email:
        return 0
    rule, slug = exception.rule, exception.workload.slug
    subject = f"{SUBJECT_PREFIX}Exception to {rule.slug} for {slug} ends soon"
    body = (
        f"The exception to rule {rule.name} ({rule.slug}) for {slug} ends at "
        f"{exception.valid_until:%Y-%m-%d %H:%M} UTC. After that the rule applies again: "
        f"calls that complete the combination are denied. File a new request before then if "
        f"the workload still needs it.\n\n{_request_again(exception.workload)}"
    )
    return _send([EmailMessage(subject, body, to=[owner.email])])


def notify_extension_expiring(extension_id: int) -> int:
    extension = (
        SessionExtension.objects.select_related("workload__owner").filter(pk=extension_id).first()
    )
    if extension is None or extension.status != SessionExtension.Status.ACTIVE:
        return 0
    owner = extension.workload.owner
    if not owner.email:
        return 0
    limits = ", ".join(
        f"{name.replace('_', ' ')} {getattr(extension, name)}"
        for name in ("max_session_seconds", "max_tool_calls", "max_reasoning_tokens")
        if getattr(extension, name) is not None
    )
    slug = extension.workload.slug
    subject = f"{SUBJECT_PREFIX}Session window of {slug} ends soon"
    body = (
        f"The longer session window of {slug} ({limits}) ends at "
        f"{extension.valid_until:%Y-%m-%d %H:%M} UTC. After that the session policy's own "
        f"limits apply again. File a new request before then if the workload still needs "
        f"it.\n\n{_request_again(extension.workload)}"
    )
    return _send([EmailMessage(subject, body, to=[owner.email])])
