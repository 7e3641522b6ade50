"""Request pages: the approver queue, filing with a live impact preview, deciding.

Thin: parse, call a selector or service, render. A NotAllowed from a service is a 403; other
domain errors re-render the form fragment (422) or come back as a message.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from governance.approvals import selectors, services
from governance.approvals.filters import AccessRequestFilter
from governance.approvals.forms import (
    BulkDecisionForm,
    CancelForm,
    DecisionForm,
    RequestForm,
    RevokeForm,
)
from governance.errors import DomainError, NotAllowed
from governance.filtering import filter_form
from governance.findings.narrowing import caps_in_force, caps_label, held_below, window_label
from governance.findings.services import may_reverse as containment_may_reverse
from governance.forms import form_add_service_error
from governance.htmx import is_fragment_request, redirect_after_post
from governance.models import AccessRequest
from governance.permissions import requires
from governance.roles import CONSOLE
from workloads.models import Entitlement, RuleException, SessionApproval, Tool
from workloads.selectors import EXTENDED_LIMITS, extension_limits, workloads_visible_to
from workloads.services import entitlement_revoke

APPROVE = selectors.APPROVE
REQUEST = selectors.REQUEST
PAGE_SIZE = 25


def _fragment(request, template: str, name: str) -> str:
    return f"{template}#{name}" if is_fragment_request(request) else template


def _rows(page, user) -> list[dict]:
    return [selectors.queue_row(access_request=r, user=user) for r in page.object_list]


@requires(CONSOLE)
def queue_view(request):
    default_view = "awaiting" if request.user.has_perm(APPROVE) else "mine"
    filters = {key: request.GET.get(key, "") for key in ("status", "kind", "workload")}
    filters["view"] = request.GET.get("view", default_view)
    if filters["view"] == "awaiting":
        filters["status"] = ""  # pending only; the page disables its status select to match
    qs = selectors.request_list(user=request.user, filters=filters)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    template = _fragment(request, "approvals/queue.html", "table")
    context = {
        "page": page,
        "rows": _rows(page, request.user),
        "filters": filters,
        "filter_form": filter_form(AccessRequestFilter, filters),
        "statuses": AccessRequest.Status.choices,
        "may_approve": request.user.has_perm(APPROVE),
        # A fragment answer also swaps in the status select, so it follows a change of view.
        "oob": "#" in template,
    }
    return render(request, template, context)


def _requestable(user):
    return workloads_visible_to(user).filter(owner=user, tier__isnull=False).order_by("slug")


@requires(REQUEST)
@require_http_methods(["GET", "POST"])
def new_view(request):
    workloads = _requestable(request.user)
    if request.method == "POST":
        form = RequestForm(request.POST, workloads=workloads)
        if form.is_valid():
            data = form.cleaned_data
            try:
                created = services.access_request_create(
                    by=request.user,
                    workload=data["workload"],
                    kind=data["kind"],
                    tools=list(data["tools"]),
                    justification=data["justification"],
                    duration_days=data["duration_days"],
                    valid_until=data["valid_until"],
                    session_limits=form.session_limits()
                    if data["kind"] == AccessRequest.Kind.SESSION_WINDOW
                    else None,
                    session=data["session"],
                )
            except NotAllowed as exc:
                raise PermissionDenied(exc.message) from exc
            except DomainError as exc:
                field = exc.field if exc.field in form.fields else None
                form.add_error(field, exc.message)
            else:
                messages.success(request, f"Request #{created.pk} filed.")
                url = reverse("approvals:detail", args=[created.pk])
                if request.htmx:
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = url
                    return response
                return redirect(url)
        context = {"form": form, "impact": _impact_from(request.POST, workloads)}
        template = _fragment(request, "approvals/new.html", "form")
        return render(request, template, context, status=422)
    # The workload page links here to ask for a blocked session: kind and session prefilled.
    initial = {name: request.GET.get(name, "") for name in ("workload", "kind", "session")}
    form = RequestForm(initial={k: v for k, v in initial.items() if v}, workloads=workloads)
    return render(
        request,
        "approvals/new.html",
        {"form": form, "impact": _impact_from(request.GET, workloads)},
    )


def _impact_from(data, workloads):
    """The preview for the workload and tools in `data`, or None when it names no workload."""
    workload = workloads.select_related("tier").filter(slug=data.get("workload", "")).first()
    if workload is None:
        return None
    kind = data.get("kind", AccessRequest.Kind.TOOLS)
    tools = []
    if kind == AccessRequest.Kind.TOOLS:
        tools = list(Tool.objects.filter(slug__in=data.getlist("tools")))
    return {
        "workload": workload,
        "tools": tools,
        "kind": kind,
        "result": selectors.impact_for(workload=workload, tools=tools, kind=kind),
        "session_approval_hours": settings.SESSION_APPROVAL_HOURS,
        "window": (
            selectors.window_comparison(workload=workload)
            if kind == AccessRequest.Kind.SESSION_WINDOW
            else []
        ),
        # What it holds already, so nobody asks for a tool it has (or asks blind).
        "held": list(
            Entitlement.objects.filter(workload=workload, status=Entitlement.Status.ACTIVE)
            .select_related("tool")
            .order_by("tool__slug")
        ),
    }


@requires(REQUEST)
def impact_view(request):
    """The live preview fragment, fetched as tools are picked."""
    impact = _impact_from(request.GET, _requestable(request.user))
    return render(request, "approvals/new.html#impact", {"impact": impact})


@requires(CONSOLE)
def detail_view(request, pk):
    access_request = selectors.request_get(user=request.user, pk=pk)
    options = selectors.decision_options(access_request=access_request, user=request.user)
    window = []
    if access_request.kind == AccessRequest.Kind.SESSION_WINDOW:
        asked = {name: getattr(access_request, name) for name in EXTENDED_LIMITS}
        window = selectors.window_comparison(workload=access_request.workload, asked=asked)
    return render(
        request,
        "approvals/detail.html",
        {
            "r": access_request,
            "options": options,
            "decisions": access_request.decisions.all(),
            "window": window,
        },
    )


def _decide(access_request, user, form: DecisionForm):
    data = form.cleaned_data
    if data["verdict"] == "approve":
        return services.access_request_approve(
            access_request=access_request,
            by=user,
            comment=data["comment"],
            justification=data["justification"],
        )
    return services.access_request_deny(
        access_request=access_request, by=user, comment=data["comment"]
    )


@requires(APPROVE)
@require_POST
def decide_view(request, pk):
    access_request = selectors.request_get(user=request.user, pk=pk)
    form = DecisionForm(request.POST)
    error = ""
    status = 200
    decided = access_request
    if not form.is_valid():
        error, status = "Choose approve or deny.", 422
    else:
        try:
            decided = _decide(access_request, request.user, form)
        except NotAllowed as exc:
            raise PermissionDenied(exc.message) from exc
        except DomainError as exc:
            # 422 for every refusal: mandate.js swaps 422 bodies, so the row shows why.
            error, status = exc.message, 422
    if request.htmx and request.POST.get("from") == "queue":
        fresh = selectors.request_get(user=request.user, pk=pk)
        row = selectors.queue_row(access_request=fresh, user=request.user)
        return render(
            request,
            "approvals/queue.html#row",
            {"row": row, "error": error, "may_approve": True},
            status=status,
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _decided_message(decided))
    return redirect("approvals:detail", pk=access_request.pk)


def _decided_message(access_request: AccessRequest) -> str:
    """Say what the decision did: an approval that fills one of several steps grants nothing."""
    if access_request.status == AccessRequest.Status.DENIED:
        return f"Request #{access_request.pk} denied."
    if access_request.status == AccessRequest.Status.APPROVED:
        return f"Request #{access_request.pk} approved and granted."
    left = selectors.open_step_count(access_request=access_request)
    more = f"{left} more approval" if left == 1 else f"{left} more approvals"
    return f"Your approval of request #{access_request.pk} is recorded; {more} needed."


def _requests(n: int) -> str:
    return f"{n} request" if n == 1 else f"{n} requests"


@requires(APPROVE)
@require_POST
def bulk_view(request):
    """Bulk approve or deny. Safe only where no written justification is needed: rows that
    would fill an exception step are skipped and must be decided one by one."""
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick requests and a verdict.")
        return redirect("approvals:queue")
    verdict = form.cleaned_data["verdict"]
    comment = form.cleaned_data["comment"]
    if verdict == "deny" and not comment.strip():
        messages.error(request, "Nothing denied: write a comment saying why.")
        return redirect(reverse("approvals:queue") + "?view=awaiting")
    closed, recorded, skipped = 0, 0, []  # closed: granted or denied
    qs = selectors.request_list(user=request.user).filter(pk__in=form.cleaned_data["ids"])
    for access_request in qs:
        options = selectors.decision_options(access_request=access_request, user=request.user)
        if not options.may_decide:
            skipped.append(f"#{access_request.pk}: {options.why_not}")
            continue
        if verdict == "approve" and options.fills_exception:
            skipped.append(f"#{access_request.pk}: an exception needs its own justification")
            continue
        try:
            if verdict == "approve":
                result = services.access_request_approve(
                    access_request=access_request, by=request.user, comment=comment
                )
            else:
                result = services.access_request_deny(
                    access_request=access_request, by=request.user, comment=comment
                )
        except DomainError as exc:
            skipped.append(f"#{access_request.pk}: {exc.message}")
            continue
        if result.status == AccessRequest.Status.PENDING:
            recorded += 1
        else:
            closed += 1
    if closed:
        done = "Approved and granted" if verdict == "approve" else "Denied"
        messages.success(request, f"{done} {_requests(closed)}.")
    if recorded:
        messages.success(
            request,
            f"Recorded your approval on {_requests(recorded)}; more approvals are needed "
            "before granting.",
        )
    if not closed and not recorded:
        past = "approved" if verdict == "approve" else "denied"
        messages.warning(request, f"No request was {past}.")
    for line in skipped:
        messages.warning(request, line)
    return redirect(reverse("approvals:queue") + "?view=awaiting")


@requires(REQUEST)
@require_POST
def cancel_view(request, pk):
    access_request = selectors.request_get(user=request.user, pk=pk)
    form = CancelForm(request.POST)
    form.is_valid()
    try:
        services.access_request_cancel(
            access_request=access_request,
            by=request.user,
            reason=form.cleaned_data.get("reason", ""),
        )
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Request #{access_request.pk} cancelled.")
    return redirect("approvals:detail", pk=access_request.pk)


@requires(CONSOLE)
@require_POST
def grant_revoke_view(request, pk):
    """Revoke a grant with a reason: an iam_admin, or the workload's owner (the service checks)."""
    grant = get_object_or_404(
        Entitlement.objects.select_related("workload"),
        pk=pk,
        workload__in=workloads_visible_to(request.user),
    )
    if not (
        request.user.has_perm("workloads.grant_entitlement")
        or grant.workload.owner_id == request.user.pk
    ):
        raise PermissionDenied("Only an IAM admin or the workload's owner may revoke a grant.")
    form = RevokeForm(request.POST)
    error = "Say why the grant is revoked."
    if form.is_valid():
        try:
            entitlement_revoke(grant=grant, by=request.user, reason=form.cleaned_data["reason"])
        except NotAllowed as exc:
            raise PermissionDenied(exc.message) from exc
        except DomainError as exc:
            error = exc.message
        else:
            error = ""
    if error and is_fragment_request(request):
        # The form posts through htmx so that hx-confirm asks first; its error shows in place.
        context = {
            "g": grant,
            "owner_revoke_error": error,
            "owner_revoke_reason": request.POST.get("reason", ""),
        }
        response = render(request, "approvals/owner_revoke_form.html", context, status=422)
        return reswap(retarget(response, f"#owner-revoke-{grant.pk}"), "outerHTML")
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Revoked {grant.tool.slug}.")
    workload_url = reverse("workloads:detail", args=[grant.workload.slug])
    if is_fragment_request(request):
        return redirect_after_post(request, workload_url)  # HX-Redirect: the page reloads
    return redirect(workload_url)


# --- rule exceptions and session windows on the workload page ------------------------------

ACCESS = "approvals/workload_access.html"
ACCESS_PAGE_SIZE = 10  # exceptions and session windows per page on the workload page
CONFIRM = {
    "exception": "Revoke this exception? Its rule applies again at once.",
    "window": "Revoke this session window? The session policy's own limits apply again at once.",
    "session": "Revoke this session's approval? Its next call is denied.",
}


def _revoke_kind(obj) -> str:
    if isinstance(obj, RuleException):
        return "exception"
    return "session" if isinstance(obj, SessionApproval) else "window"


def _revoke_form(obj, data=None) -> RevokeForm:
    return RevokeForm(data, prefix=f"{_revoke_kind(obj)}-{obj.pk}")


def access_panel_context(request, workload) -> dict:
    """The panel's context: what the workload holds beyond its grants, and who may revoke it
    (the services check again)."""
    user = request.user
    panel = selectors.workload_access(workload=workload)
    exceptions = Paginator(panel["exceptions"], ACCESS_PAGE_SIZE).get_page(
        request.GET.get("exceptions_page")
    )
    extensions = Paginator(panel["extensions"], ACCESS_PAGE_SIZE).get_page(
        request.GET.get("windows_page")
    )
    session_approvals = Paginator(panel["session_approvals"], ACCESS_PAGE_SIZE).get_page(
        request.GET.get("sessions_page")
    )
    for obj in (*exceptions, *extensions, *session_approvals):
        obj.revoke_form = _revoke_form(obj)
    caps = caps_in_force([workload.pk]).get(workload.pk, {}) if extensions else {}
    for extension in extensions:
        extension.held_to = caps_label(held_below(extension_limits(extension), caps))
        extension.raises = window_label(extension_limits(extension))
    return {
        **panel,
        "exceptions": exceptions,
        "extensions": extensions,
        "session_approvals": session_approvals,
        "workload": workload,
        "may_revoke_exceptions": user.has_perm(services.REVOKE_EXCEPTION),
        "may_revoke_windows": user.has_perm(services.REVOKE_WINDOW)
        or (workload.owner_id == user.pk and user.has_perm(REQUEST)),
        "may_request": workload.owner_id == user.pk and user.has_perm(REQUEST),
        "may_lift": containment_may_reverse(user, workload),
        "may_view_findings": user.has_perm("governance.view_findings"),
        "session_approval_hours": settings.SESSION_APPROVAL_HOURS,
        "confirm": CONFIRM,
        "request": request,
    }


def _revoke(request, obj, revoke, *, kind: str, what: str):
    """Revoke with a reason. htmx: the refreshed panel, or the form with its errors (422) in
    place; a plain post goes back to the workload page."""
    form = _revoke_form(obj, request.POST)
    if form.is_valid():
        try:
            revoke(obj, request.user, form.cleaned_data["reason"])
        except NotAllowed as exc:
            raise PermissionDenied(exc.message) from exc
        except DomainError as exc:
            form_add_service_error(form, exc)
    workload_url = reverse("workloads:detail", args=[obj.workload.slug])
    if not is_fragment_request(request):
        if form.errors:
            messages.error(request, " ".join(str(e) for errs in form.errors.values() for e in errs))
        else:
            messages.success(request, f"Revoked the {what}.")
        return redirect_after_post(request, workload_url)
    if not form.errors:
        workload = workloads_visible_to(request.user).get(pk=obj.workload_id)
        response = render(request, ACCESS, access_panel_context(request, workload))
        if kind == "window":  # the policy panel's "in force" column moves with it
            from workloads.views import policy_panel_context

            context = policy_panel_context(request, workload) | {"oob": True}
            response.content += render_to_string(
                "workloads/detail.html#policy", context, request=request
            ).encode()
        return response
    obj.revoke_form = form
    context = {"item": obj, "kind": kind, "action": request.path, "confirm": CONFIRM[kind]}
    response = render(request, f"{ACCESS}#revoke", context, status=422)
    return reswap(retarget(response, f"#{kind}-revoke-{obj.pk}"), "outerHTML")


@requires(services.REVOKE_EXCEPTION)
@require_POST
def exception_revoke_view(request, pk):
    """An iam_admin revokes a rule exception; the rule applies again at once."""
    exception = get_object_or_404(selectors.exception_list(user=request.user), pk=pk)
    return _revoke(
        request,
        exception,
        lambda obj, by, reason: services.rule_exception_revoke(exception=obj, by=by, reason=reason),
        kind="exception",
        what=f"exception to {exception.rule.slug}",
    )


def _require_owner_or_admin(user, window) -> None:
    if not services.may_revoke_window(user, window):
        raise PermissionDenied("Only an IAM admin or the workload's owner may revoke it.")


@requires(REQUEST)
@require_POST
def window_revoke_view(request, pk):
    """An iam_admin or the workload's owner ends a session window early."""
    extension = get_object_or_404(selectors.session_window_list(user=request.user), pk=pk)
    _require_owner_or_admin(request.user, extension)
    return _revoke(
        request,
        extension,
        lambda obj, by, reason: services.session_extension_revoke(
            extension=obj, by=by, reason=reason
        ),
        kind="window",
        what="session window",
    )


@requires(REQUEST)
@require_POST
def session_approval_revoke_view(request, pk):
    """An IAM admin or the workload's owner ends a session's approval early."""
    approval = get_object_or_404(selectors.session_approval_list(user=request.user), pk=pk)
    _require_owner_or_admin(request.user, approval)
    return _revoke(
        request,
        approval,
        lambda obj, by, reason: services.session_approval_revoke(
            approval=obj, by=by, reason=reason
        ),
        kind="session",
        what=f"approval of session {approval.session}",
    )
