"""Findings queue, finding detail, triage, containment reversal, dashboard panels,
re-evaluation jobs. Thin: parse, call a selector or service, render."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget

from governance.errors import DomainError
from governance.filtering import filter_form
from governance.findings import narrowing, selectors, services
from governance.findings.charts import bar_chart
from governance.findings.filters import IN_FORCE, UNRESOLVED, FindingFilter
from governance.findings.forms import (
    AssignForm,
    BulkTriageForm,
    CommentForm,
    ContainmentApplyForm,
    ContainmentLiftForm,
    ContainmentReverseForm,
    NarrowSessionsForm,
    ReevaluationForm,
    StatusForm,
)
from governance.forms import form_add_service_error
from governance.htmx import is_fragment_request, redirect_after_post, render_invalid
from governance.models import ContainmentAction, Finding, FindingKind, ReevaluationJob, Severity
from governance.numbers import whole_number
from governance.permissions import requires
from workloads.models import SensitivityTier
from workloads.selectors import effective_session_limits, workload_get

VIEW = "governance.view_findings"
TRIAGE = "governance.triage_finding"
FILTER_KEYS = ("kind", "severity", "status", "containment", "workload", "tier", "assignee")
PAGE_SIZE = 25
BULK_INVALID = "Nothing updated: choose findings and a status for them."


def _queue_filters(params) -> dict[str, str]:
    """The queue's filters from a GET, or from the hidden copies a bulk action posts back."""
    filters = {key: params.get(key, "") for key in FILTER_KEYS}
    if "status" not in params:
        filters["status"] = Finding.Status.OPEN  # the queue opens on what still needs triage
    return filters


def _filter_query(filters: dict[str, str]) -> str:
    """The filters as a query string for page links: nothing else of the request (no page, no
    CSRF token, no ids); status always, since its absence means Open."""
    query = QueryDict(mutable=True)
    query.update({key: value for key, value in filters.items() if value or key == "status"})
    return query.urlencode()


def _queue_context(request, filters: dict[str, str], page_number=None) -> dict:
    page = Paginator(selectors.finding_list(user=request.user, filters=filters), PAGE_SIZE)
    return {
        "page": page.get_page(page_number),
        "filters": filters,
        "filter_form": filter_form(FindingFilter, filters),
        "kinds": FindingKind.choices,
        "severities": Severity.choices,
        "statuses": Finding.Status.choices,
        "status_filters": [*Finding.Status.choices, (UNRESOLVED, "Unresolved")],
        "containment_filters": [(IN_FORCE, "In force")],
        "tiers": SensitivityTier.objects.order_by("rank"),
        "counts": selectors.finding_counts(user=request.user),
        "query": _filter_query(filters),
    }


@requires(VIEW)
def queue(request):
    template = "findings/queue.html"
    if is_fragment_request(request):
        template += "#table"
    context = _queue_context(request, _queue_filters(request.GET), request.GET.get("page"))
    return render(request, template, context)


@requires(VIEW)
def counts(request):
    context = {"counts": selectors.finding_counts(user=request.user)}
    return render(request, "findings/queue.html#counts", context)


@requires(TRIAGE)
@require_POST
def bulk_triage(request):
    visible = selectors.findings_visible_to(request.user)
    ids = [n for i in request.POST.getlist("ids") if (n := whole_number(i)) is not None]
    allowed = list(visible.filter(pk__in=ids).values_list("pk", flat=True))
    form = BulkTriageForm(request.POST, finding_ids=allowed)
    outcome: list[str] = []
    if form.is_valid():
        status = form.cleaned_data["new_status"]
        result = services.findings_bulk_set_status(
            finding_ids=form.cleaned_data["ids"],
            status=status,
            comment=form.cleaned_data["comment"],
            by=request.user,
        )
        outcome = _bulk_outcome(result, status)
    filters = _queue_filters(request.POST)
    if request.htmx:
        # The table is refreshed with the queue's own filters, on the page it was posted
        # from; counters swap out of band.
        context = _queue_context(request, filters, request.POST.get("page")) | {
            "bulk_outcome": outcome,
            "bulk_error": "" if form.is_valid() else BULK_INVALID,
            "oob": True,
        }
        status = 200 if form.is_valid() else 422
        response = render(request, "findings/queue.html#bulk_result", context, status=status)
        # The page shown may be an earlier one (the last emptied): the address says which.
        response["HX-Replace-Url"] = _queue_url(filters, context["page"].number)
        return response
    if form.is_valid():
        messages.success(request, " ".join(outcome))
    else:
        messages.error(request, BULK_INVALID)
    return redirect(_queue_url(filters, request.POST.get("page")))


def _queue_url(filters: dict[str, str], page) -> str:
    url = f"{reverse('findings:queue')}?{_filter_query(filters)}"
    number = whole_number(None if page is None else str(page))  # "²".isdigit(), int("²") fails
    return f"{url}&page={number}" if number is not None and number > 1 else url


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{pk}" for pk in ids)


def _bulk_outcome(result: services.BulkTriage, status: str) -> list[str]:
    """What a bulk move did, sentence by sentence: how many moved, which were left as they
    were and why, and which closed with containment still in force."""
    target = services.status_label(status).lower()
    lines = [f"{len(result.changed)} updated."]
    for current, ids in result.skipped.items():
        label = services.status_label(current).lower()
        if current == status:
            why = f"already {label}"
        elif current in services.CLOSED:
            why = f"{label}: a closed finding can only be reopened"
        else:
            why = f"{label}: cannot be marked {target}"
        lines.append(f"Skipped {_ids(ids)} ({why}).")
    if status in services.CLOSED:
        held = selectors.findings_with_containment_in_force(result.changed)
        if held:
            lines.append(
                f"The containment of {_ids(held)} is still in force: an IAM admin reverses it "
                "on each finding's page (filter Containment: in force to find them)."
            )
    return lines


def _detail_context(
    request,
    finding: Finding,
    narrow_form: NarrowSessionsForm | None = None,
    assign_form: AssignForm | None = None,
    status_form: StatusForm | None = None,
):
    may_contain = request.user.has_perm(services.CONTAIN)
    if narrow_form is None and may_contain and services.narrowing_offered(finding):
        in_force = _limits_in_force(finding)
        narrow_form = NarrowSessionsForm(
            in_force=in_force, initial=narrowing.proposed_caps(finding, in_force)
        )
    # Other findings holding the same workload-wide measure: reversing this one leaves it.
    holders = services.other_holders(finding)
    containment = [
        (action, narrowing.caps_label(action.limits), holders.get(action.action, []))
        for action in finding.containment.select_related("grant__tool", "reversed_by", "created_by")
    ]
    return {
        "finding": finding,
        "details": selectors.finding_details_shown(finding),
        "comments": finding.comments.select_related("author"),
        "containment": containment,
        # A closed finding whose measures still hold: the page says so, above them.
        "closed_in_force": [
            _measure_label(action)
            for action, _caps, _others in containment
            if action.reversed_at is None
        ]
        if finding.status in services.CLOSED
        else [],
        "contain_options": services.containment_options(finding) if may_contain else [],
        "narrow_form": narrow_form,
        "may_reverse": services.may_reverse(request.user, finding.workload),
        "status_form": status_form or StatusForm(),
        "comment_form": CommentForm(),
        "assign_form": assign_form or AssignForm(),
        "triagers": services.triagers(),
        "next_statuses": sorted(services.ALLOWED_TRANSITIONS[finding.status]),
    }


def _measure_label(action: ContainmentAction) -> str:
    label = action.get_action_display().lower()
    if action.grant is not None:
        return f"{label} ({action.grant.tool.slug})"
    if action.limits:
        return f"{label} ({narrowing.caps_label(action.limits)})"
    return label


def _limits_in_force(finding: Finding) -> dict:
    return effective_session_limits(workload=finding.workload, at=timezone.now())


@requires(VIEW)
def detail(request, pk):
    finding = selectors.finding_get(user=request.user, pk=pk)
    return render(request, "findings/detail.html", _detail_context(request, finding))


def _done(request, finding, message=""):
    if message:
        messages.success(request, message)
    return redirect("findings:detail", pk=finding.pk)


@requires(TRIAGE)
@require_POST
def set_status(request, pk):
    """Move a finding on, from the status the page showed (`seen_status`). Refused, the form
    comes back with the reason and the comment as typed (422); nothing is claimed done."""
    finding = selectors.finding_get(user=request.user, pk=pk)
    form = StatusForm(request.POST)
    if form.is_valid():
        status = form.cleaned_data["status"]
        try:
            services.finding_set_status(
                finding=finding,
                status=status,
                comment=form.cleaned_data["comment"],
                seen_status=form.cleaned_data["seen_status"] or None,
                by=request.user,
            )
        except DomainError as exc:
            form_add_service_error(form, exc)
            # Re-read: the form offers the moves from the status the finding has now.
            finding = selectors.finding_get(user=request.user, pk=pk)
        else:
            messages.success(request, f"Finding marked {services.status_label(status).lower()}.")
            if status in services.CLOSED:
                held = [_measure_label(a) for a in selectors.containment_in_force(finding)]
                if held:
                    messages.warning(
                        request,
                        f"Its containment is still in force: {'; '.join(held)}. Closing a "
                        "finding does not lift it: an IAM admin reverses each measure on this "
                        "page.",
                    )
            return redirect_after_post(request, reverse("findings:detail", args=[finding.pk]))
    return render_invalid(
        request,
        "findings/detail.html",
        # The fragment brings the status badge along: the finding may have moved meanwhile.
        _detail_context(request, finding, status_form=form) | {"oob": is_fragment_request(request)},
        partial="status_form",
        target="#status-form",
    )


@requires(TRIAGE)
@require_POST
def assign(request, pk):
    finding = selectors.finding_get(user=request.user, pk=pk)
    form = AssignForm(request.POST)
    if form.is_valid():
        try:
            services.finding_assign(
                finding=finding, assignee=form.cleaned_data["assignee"], by=request.user
            )
        except DomainError as exc:
            form_add_service_error(form, exc)
        else:
            return _done(request, finding, "Assignee updated.")
    return render_invalid(
        request,
        "findings/detail.html",
        _detail_context(request, finding, assign_form=form),
        partial="assign_form",
        target="#assign-form",
    )


@requires(TRIAGE)
@require_POST
def comment(request, pk):
    finding = selectors.finding_get(user=request.user, pk=pk)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write something.")
        return _done(request, finding)
    services.finding_comment_add(finding=finding, body=form.cleaned_data["body"], by=request.user)
    return _done(request, finding, "Comment added.")


@requires(services.CONTAIN)
@require_POST
def contain(request, pk):
    """Suspend the finding's workload, revoke the grant it names, or make each of its sessions
    need an approval, by hand, with a reason. The form asks to confirm (hx-confirm); the
    outcome is a message on the finding's page."""
    finding = selectors.finding_get(user=request.user, pk=pk)
    form = ContainmentApplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose what to do, and say why.")
    else:
        try:
            services.containment_apply(
                finding=finding,
                action=form.cleaned_data["action"],
                by=request.user,
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Contained. An IAM admin can reverse it from this page.")
    return redirect_after_post(request, reverse("findings:detail", args=[finding.pk]))


@requires(services.CONTAIN)
@require_POST
def narrow(request, pk):
    """Lower the finding's workload's session limits, by hand, with a reason. Field errors
    show in the form (422); success reloads the finding with a message."""
    finding = selectors.finding_get(user=request.user, pk=pk)
    form = NarrowSessionsForm(request.POST, in_force=_limits_in_force(finding))
    if form.is_valid():
        try:
            narrowed = services.containment_apply(
                finding=finding,
                action=ContainmentAction.Action.NARROW_SESSIONS,
                by=request.user,
                reason=form.cleaned_data["reason"],
                limits=form.caps(),
            )
        except DomainError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"Narrowed. {narrowing.caps_effect(narrowed.limits)} "
                "An IAM admin can reverse it from this page.",
            )
            return redirect_after_post(request, reverse("findings:detail", args=[finding.pk]))
    return render_invalid(
        request,
        "findings/detail.html",
        _detail_context(request, finding, narrow_form=form),
        partial="narrow_form",
        target="#narrow-form",
    )


@requires(services.REVERSE)
@require_POST
def lift(request, slug):
    """Lift a workload's suspension or session gate by reversing every finding's record that
    holds it, with one reason. The outcome is a message on the workload's page."""
    workload = workload_get(user=request.user, slug=slug)
    form = ContainmentLiftForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the suspension or the gate to lift, and say why.")
    else:
        try:
            lift = services.containment_lift(
                workload=workload,
                action=form.cleaned_data["action"],
                by=request.user,
                reason=form.cleaned_data["reason"],
            )
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            ids = ", ".join(f"#{pk}" for pk in lift.reversed_for)
            if lift.still_held_by:
                held = ", ".join(f"#{pk}" for pk in lift.still_held_by)
                messages.warning(
                    request,
                    f"The containment of finding {ids} is reversed, but finding {held} "
                    "contained the workload meanwhile: the measure stands.",
                )
            else:
                messages.success(request, f"Lifted: the containment of finding {ids} is reversed.")
    return redirect_after_post(request, reverse("workloads:detail", args=[workload.slug]))


@requires(services.REVERSE)
@require_POST
def reverse_containment(request, pk):
    """Lift a containment, with a reason for the audit. The form asks to confirm (hx-confirm,
    so it posts through htmx): success reloads the finding; an error shows in the form (422)."""
    action = get_object_or_404(ContainmentAction, pk=pk)
    finding = selectors.finding_get(user=request.user, pk=action.finding_id)
    form = ContainmentReverseForm(request.POST)
    error = "" if form.is_valid() else " ".join(str(e) for e in form.errors.get("reason", []))
    still_held: list[int] = []
    already_held = False
    if form.is_valid():
        try:
            reversal = services.containment_reverse(
                action=action, by=request.user, reason=form.cleaned_data["reason"]
            )
        except DomainError as exc:
            error = exc.message
        else:
            error, still_held = "", reversal.still_held_by
            already_held = reversal.already_held
    if error and is_fragment_request(request):
        reason = request.POST.get("reason", "")
        context = {
            "action": action,
            "others": services.other_holders(finding).get(action.action, []),
            "reverse_error": error,
            "reverse_reason": reason,
        }
        response = render(request, "findings/detail.html#reverse_form", context, status=422)
        return reswap(retarget(response, f"#reverse-{action.pk}"), "outerHTML")
    if error:
        messages.error(request, error)
    elif action.action == ContainmentAction.Action.NARROW_SESSIONS:
        messages.success(
            request,
            "Containment reversed. Its caps no longer hold; any other narrowing's still do.",
        )
    elif still_held:
        measure = (
            "its sessions still need approval"
            if action.action == ContainmentAction.Action.GATE_SESSIONS
            else "the workload stays suspended"
        )
        held_by = ", ".join(f"#{pk}" for pk in still_held)
        messages.warning(
            request, f"Reversed. But {measure}: the containment of finding {held_by} holds it too."
        )
    elif already_held:
        messages.success(
            request,
            "Containment reversed. The workload holds the tool again already, so nothing was "
            "granted.",
        )
    else:
        messages.success(request, "Containment reversed.")
    return redirect_after_post(request, reverse("findings:detail", args=[finding.pk]))


@requires(VIEW)
def dashboard_panels(request):
    series = selectors.dashboard_series(user=request.user)
    return render(
        request,
        "findings/dashboard_panels.html",
        {
            "findings_chart": bar_chart(series["findings"]),
            "sessions_chart": bar_chart(series["sessions"]),
            "top_workloads": series["top_workloads"],
        },
    )


@requires("governance.run_reevaluation")
def reevaluation(request):
    from governance.evaluation.reevaluation import reevaluation_start

    form = ReevaluationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = reevaluation_start(days=form.cleaned_data["days"], by=request.user)
        except DomainError as exc:
            form.add_error("days", exc.message)
        else:
            return redirect("findings:reevaluation_job", pk=job.pk)
    status = 422 if form.errors else 200
    jobs = ReevaluationJob.objects.select_related("created_by")[:10]
    return render(
        request, "findings/reevaluation.html", {"form": form, "jobs": jobs}, status=status
    )


@requires("governance.run_reevaluation")
def reevaluation_job(request, pk):
    job = get_object_or_404(ReevaluationJob, pk=pk)
    template = "findings/reevaluation_job.html"
    if is_fragment_request(request):
        template += "#progress"
    return render(request, template, {"job": job})
