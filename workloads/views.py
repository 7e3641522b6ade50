"""Catalogue pages. Thin: validate with a form, read with a selector, write with a service.

Pattern for every write: a valid form calls one service; a DomainError (or the model's own
ValidationError) goes back onto the form and the form fragment is re-rendered in place with
status 422; success re-renders the region (htmx) or redirects (plain post).
"""

from typing import Protocol, cast

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from governance.audit_labels import audit_labels_attach
from governance.errors import DomainError
from governance.filtering import filter_form
from governance.findings.narrowing import narrowings_of
from governance.findings.services import may_reverse as containment_may_reverse
from governance.forms import form_add_service_error
from governance.htmx import is_fragment_request, redirect_after_post, render_invalid, render_page
from governance.permissions import requires
from governance.roles import CONSOLE
from workloads import services
from workloads.filters import WorkloadFilter
from workloads.forms import (
    ClassifyForm,
    CombinationRuleForm,
    GrantForm,
    RevokeForm,
    SessionPolicyForm,
    StatusForm,
    ToolForm,
    WorkloadRegisterForm,
)
from workloads.models import (
    CombinationRule,
    Entitlement,
    SensitivityTier,
    SessionPolicy,
    Tool,
    Workload,
)
from workloads.selectors import (
    combination_rule_list,
    effective_session_limits,
    entitlements_of,
    tier_list,
    tool_list,
    window_ceilings,
    workload_audit_trail,
    workload_get,
    workload_list,
    workloads_holding_combination,
)

LIST_PAGE_SIZE = 25
AUDIT_TRAIL_PAGE_SIZE = 10
FILTER_KEYS = ("q", "tier", "status", "owner", "unclassified", "ordering")
SORTS = [
    ("slug", "Slug"),
    ("name", "Name"),
    ("-created", "Newest"),
    ("created", "Oldest"),
    ("status", "Status"),
    ("-tier", "Most sensitive tier"),
    ("tier", "Least sensitive tier"),
]
DETAIL = "workloads/detail.html"


def _page_query(request, drop=("page",)) -> str:
    """The current query string without the page, for pagination links that keep filters."""
    query = request.GET.copy()
    for key in drop:
        query.pop(key, None)
    return query.urlencode()


# --- list --------------------------------------------------------------------------


@requires(CONSOLE)
def workload_list_view(request):
    filters = {key: request.GET.get(key, "") for key in FILTER_KEYS}
    filters["ordering"] = filters["ordering"] or "slug"
    page = Paginator(workload_list(user=request.user, filters=filters), LIST_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "filters": filters,
        "filter_form": filter_form(WorkloadFilter, filters),
        "query": _page_query(request),
        "tiers": SensitivityTier.objects.order_by("rank"),
        "statuses": Workload.Status.choices,
        "sorts": SORTS,
        "can_register": request.user.has_perm("workloads.register_workload"),
    }
    return render_page(
        request, "workloads/list.html", context, partials={"workload-table": "table"}
    )


# --- register ------------------------------------------------------------------------

RESERVED_SLUGS = {"new"}


@requires("workloads.register_workload")
@require_http_methods(["GET", "POST"])
def workload_register_view(request):
    form = WorkloadRegisterForm(request.POST or None, user=request.user)
    template = "workloads/register.html"
    if request.method == "POST":
        if form.is_valid() and form.cleaned_data["slug"] in RESERVED_SLUGS:
            form.add_error("slug", "This slug is reserved.")
        if form.is_valid():
            try:
                workload = services.workload_register(by=request.user, **form.service_kwargs())
            except (DomainError, ValidationError) as error:
                form_add_service_error(form, error)
            else:
                return redirect_after_post(
                    request, reverse("workloads:detail", args=[workload.slug])
                )
        return render_invalid(
            request, template, {"form": form}, partial="form", target="#register-form"
        )
    return render_page(request, template, {"form": form}, partial="form")


# --- detail and its in-place actions --------------------------------------------------------

# (from status, to status) -> (button label, confirmation question)
TRANSITION_LABELS: dict[tuple[str, str], tuple[str, str]] = {
    (Workload.Status.DRAFT, Workload.Status.ACTIVE): ("Activate", ""),
    (Workload.Status.SUSPENDED, Workload.Status.ACTIVE): (
        "Reinstate",
        "Reinstate this workload? Its grants apply again at once.",
    ),
    (Workload.Status.ACTIVE, Workload.Status.SUSPENDED): (
        "Suspend",
        "Suspend this workload? Every decision for it will deny until it is reinstated.",
    ),
}
RETIRE_CONFIRM = "Retire this workload? This cannot be undone."


def _transitions(workload: Workload, contained_by: list[int]) -> list[dict]:
    rows = []
    allowed = services.ALLOWED_STATUS_CHANGES[workload.status]
    for target in [s for s in Workload.Status.values if s in allowed]:  # lifecycle order
        if contained_by and target == Workload.Status.ACTIVE:
            continue  # lifted by reversing the containment, on the finding's page
        label, confirm = TRANSITION_LABELS.get(
            (workload.status, target), ("Retire", RETIRE_CONFIRM)
        )
        rows.append(
            {
                "status": target,
                "label": label,
                "confirm": confirm,
                "danger": target != "active",
                "needs_reason": services.status_change_needs_reason(workload.status, target),
            }
        )
    return rows


def _policy_rows(workload: Workload, policy: SessionPolicy | None, form) -> list[dict]:
    """Each setting: the override, the tier default beside it, and what is in force now."""
    effective = (
        effective_session_limits(workload=workload, at=timezone.now())
        if policy is not None and workload.tier
        else {}
    )
    rows = []
    for name in form.fields:
        rows.append(
            {
                "name": name,
                "label": form.fields[name].label or name.replace("_", " ").capitalize(),
                "field": form[name],
                "override": getattr(policy, name, None) if policy else None,
                "default": getattr(workload.tier, name, None) if workload.tier else None,
                "effective": effective.get(name),
            }
        )
    return rows


def _session_policy(workload: Workload) -> SessionPolicy | None:
    try:
        return workload.session_policy
    except SessionPolicy.DoesNotExist:
        return None


class _GrantRow(Protocol):
    """What the detail template reads off a current grant besides its fields."""

    expired_now: bool
    revoke_form: RevokeForm


def policy_panel_context(request, workload: Workload, policy_form=None) -> dict:
    """What the session policy panel shows: also re-rendered on its own when something else
    on the page (a revoked session window) changes the limits in force."""
    policy = _session_policy(workload)
    policy_form = policy_form or SessionPolicyForm.for_policy(policy)
    return {
        "workload": workload,
        "policy": policy,
        "policy_rows": _policy_rows(workload, policy, policy_form),
        "policy_form": policy_form,
        "narrowings": narrowings_of(workload.pk),
        "can_edit_policy": request.user.has_perm("workloads.manage_catalogue"),
    }


def _detail_context(request, workload: Workload, **forms) -> dict:
    user = request.user
    now = timezone.now()
    contained_by = (
        services.suspending_findings(workload)
        if workload.status == Workload.Status.SUSPENDED
        else []
    )
    grants = list(entitlements_of(workload=workload))
    current = [g for g in grants if g.status == Entitlement.Status.ACTIVE]
    failed_revoke = forms.get("revoke_form")
    for grant in current:
        row = cast(_GrantRow, grant)
        row.expired_now = not grant.is_valid_at(now) and grant.valid_from <= now
        if failed_revoke is not None and failed_revoke.prefix == f"revoke-{grant.pk}":
            row.revoke_form = failed_revoke
        else:
            row.revoke_form = RevokeForm(prefix=f"revoke-{grant.pk}")
    audit_page = Paginator(workload_audit_trail(workload=workload), AUDIT_TRAIL_PAGE_SIZE).get_page(
        request.GET.get("audit_page")
    )
    audit_page.object_list = audit_labels_attach(audit_page.object_list)
    return {
        **policy_panel_context(request, workload, forms.get("policy_form")),
        "classify_form": forms.get("classify_form")
        or ClassifyForm(
            initial={
                "tier": workload.tier.slug if workload.tier else None,
                "rationale": workload.classification_rationale,
            }
        ),
        "status_error": forms.get("status_error"),
        "grant_form": forms.get("grant_form") or GrantForm(tier=workload.tier),
        "current_grants": current,
        "past_grants": [g for g in grants if g.status != Entitlement.Status.ACTIVE],
        "audit_page": audit_page,
        "transitions": _transitions(workload, contained_by),
        "contained_by": contained_by,
        "may_lift": containment_may_reverse(user, workload),
        "can_classify": user.has_perm("workloads.classify_workload"),
        "can_grant": user.has_perm("workloads.grant_entitlement"),
        "now": now,
    }


@requires(CONSOLE)
def workload_detail_view(request, slug):
    workload = workload_get(user=request.user, slug=slug)
    return render_page(
        request,
        DETAIL,
        _detail_context(request, workload),
        partials={"audit-trail": "audit", "workload-detail": "detail"},
    )


def _after_detail_write(request, workload: Workload):
    """Success: the whole detail region again (badges, policy, grants and trail all move)."""
    if is_fragment_request(request):
        workload = workload_get(user=request.user, slug=workload.slug)
        return render_page(request, DETAIL, _detail_context(request, workload), partial="detail")
    return redirect_after_post(request, reverse("workloads:detail", args=[workload.slug]))


def _detail_invalid(request, workload: Workload, *, partial: str, target: str, **forms):
    return render_invalid(
        request, DETAIL, _detail_context(request, workload, **forms), partial=partial, target=target
    )


def _detail_get(request, workload: Workload, partial: str):
    return render_page(request, DETAIL, _detail_context(request, workload), partial=partial)


def _detail_form_view(request, slug, *, form_class, apply, partial: str, target: str, key: str):
    """GET: the fragment. POST: validate, call the service, and either refresh the page or
    re-render the fragment with the service's refusal as field errors (422)."""
    workload = workload_get(user=request.user, slug=slug)
    if request.method == "GET":
        return _detail_get(request, workload, partial)
    form = form_class(workload, request.POST)
    if form.is_valid():
        try:
            apply(workload, form.cleaned_data)
        except DomainError as error:
            form_add_service_error(form, error)
        else:
            return _after_detail_write(request, workload)
    return _detail_invalid(request, workload, partial=partial, target=target, **{key: form})


@requires("workloads.classify_workload")
@require_http_methods(["GET", "POST"])
def workload_classify_view(request, slug):
    def classify(workload, data):
        services.workload_classify(
            workload=workload, tier=data["tier"], rationale=data["rationale"], by=request.user
        )

    return _detail_form_view(
        request,
        slug,
        form_class=lambda _w, data: ClassifyForm(data),
        apply=classify,
        partial="classify_form",
        target="#classify-form",
        key="classify_form",
    )


@requires("workloads.classify_workload")
@require_http_methods(["GET", "POST"])
def workload_status_view(request, slug):
    workload = workload_get(user=request.user, slug=slug)
    if request.method == "GET":
        return _detail_get(request, workload, "status_actions")
    form = StatusForm(request.POST)
    if form.is_valid():
        try:
            services.workload_set_status(
                workload=workload,
                status=form.cleaned_data["status"],
                reason=form.cleaned_data["reason"],
                by=request.user,
            )
        except DomainError as error:
            form_add_service_error(form, error)
        else:
            return _after_detail_write(request, workload)
    message = " ".join(str(e) for errors in form.errors.values() for e in errors)
    return _detail_invalid(
        request, workload, partial="status_actions", target="#status-actions", status_error=message
    )


@requires("workloads.manage_catalogue")
@require_http_methods(["GET", "POST"])
def session_policy_edit_view(request, slug):
    def update(workload, data):
        services.session_policy_update(workload=workload, by=request.user, **data)

    return _detail_form_view(
        request,
        slug,
        form_class=lambda w, data: SessionPolicyForm.for_policy(_session_policy(w), data),
        apply=update,
        partial="policy",
        target="#policy",
        key="policy_form",
    )


@requires("workloads.grant_entitlement")
@require_http_methods(["GET", "POST"])
def grant_create_view(request, slug):
    def grant(workload, data):
        services.entitlement_grant(
            workload=workload,
            tool=data["tool"],
            valid_until=data["valid_until"],
            by=request.user,
            reason=data["reason"],
        )

    return _detail_form_view(
        request,
        slug,
        form_class=lambda w, data: GrantForm(data, tier=w.tier),
        apply=grant,
        partial="grant_form",
        target="#grant-form",
        key="grant_form",
    )


@requires("workloads.grant_entitlement")
@require_http_methods(["POST"])
def grant_revoke_view(request, slug, pk):
    workload = workload_get(user=request.user, slug=slug)
    grant = get_object_or_404(workload.entitlements.select_related("tool"), pk=pk)
    form = RevokeForm(request.POST, prefix=f"revoke-{grant.pk}")
    if form.is_valid():
        try:
            services.entitlement_revoke(
                grant=grant, reason=form.cleaned_data["reason"], by=request.user
            )
        except DomainError as error:
            form_add_service_error(form, error)
        else:
            return _after_detail_write(request, workload)
    if is_fragment_request(request):
        cast(_GrantRow, grant).revoke_form = form
        return render_invalid(
            request,
            DETAIL,
            {"g": grant, "workload": workload},
            partial="revoke_form",
            target=f"#revoke-{grant.pk}",
        )
    return _detail_invalid(request, workload, partial="grants", target="#grants", revoke_form=form)


# --- tiers -------------------------------------------------------------------------------


@requires(CONSOLE)
def tier_list_view(request):
    """What each tier means: the session defaults a workload in it takes, how long its grants
    last and how many approvals they need, how far a session window may go, and what its
    rule contains by itself. Tiers are few and fixed (seeded), so one page holds them all."""
    tiers = tier_list().annotate(workload_count=Count("workloads"))
    return render(
        request,
        "workloads/tiers.html",
        {
            "rows": [(each, window_ceilings(each)) for each in tiers],
            "window_factor": settings.SESSION_WINDOW_MAX_FACTOR,
        },
    )


# --- tools -------------------------------------------------------------------------------


@requires(CONSOLE)
def tool_list_view(request):
    page = Paginator(tool_list(), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "query": _page_query(request),
        "can_manage": request.user.has_perm("workloads.manage_catalogue"),
    }
    return render_page(request, "workloads/tools.html", context, partials={"tool-table": "table"})


def _catalogue_form_view(request, *, form, template, save, done_url):
    """Create/edit pages for tools and rules: same flow, different form and service."""
    if request.method == "POST":
        if form.is_valid():
            try:
                save(form.cleaned_data)
            except (DomainError, ValidationError) as error:
                form_add_service_error(form, error)
            else:
                return redirect_after_post(request, done_url)
        return render_invalid(
            request, template, {"form": form}, partial="form", target="#catalogue-form"
        )
    return render_page(request, template, {"form": form}, partial="form")


@requires("workloads.manage_catalogue")
@require_http_methods(["GET", "POST"])
def tool_create_view(request):
    return _catalogue_form_view(
        request,
        form=ToolForm(request.POST or None),
        template="workloads/tool_form.html",
        save=lambda data: services.tool_save(by=request.user, **data),
        done_url=reverse("workloads:tools"),
    )


@requires("workloads.manage_catalogue")
@require_http_methods(["GET", "POST"])
def tool_edit_view(request, slug):
    tool = get_object_or_404(Tool, slug=slug)
    form = ToolForm(request.POST or None, tool=tool)
    return _catalogue_form_view(
        request,
        form=form,
        template="workloads/tool_form.html",
        save=lambda data: services.tool_save(by=request.user, tool=tool, **data),
        done_url=reverse("workloads:tools"),
    )


# --- combination rules ----------------------------------------------------------------------


@requires(CONSOLE)
def rule_list_view(request):
    page = Paginator(combination_rule_list(), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "query": _page_query(request),
        "can_manage": request.user.has_perm("workloads.manage_catalogue"),
    }
    return render_page(request, "workloads/rules.html", context, partials={"rule-table": "table"})


@requires("workloads.manage_catalogue")
@require_http_methods(["GET", "POST"])
def rule_create_view(request):
    return _catalogue_form_view(
        request,
        form=CombinationRuleForm(request.POST or None),
        template="workloads/rule_form.html",
        save=lambda data: _rule_saved(
            request, services.combination_rule_save(by=request.user, **data)
        ),
        done_url=reverse("workloads:rules"),
    )


def _rule_saved(request, rule: CombinationRule) -> None:
    """A rule on grants only stops grants made after it: say which workloads already hold
    the combination, so the admin can review them (revoke, or approve an exception)."""
    if not rule.enabled or rule.scope == CombinationRule.Scope.DYNAMIC:
        return
    holders = workloads_holding_combination(rule=rule, at=timezone.now())
    if holders:
        shown = ", ".join(holders[:10]) + (
            f" and {len(holders) - 10} more" if len(holders) > 10 else ""
        )
        messages.warning(
            request,
            f"Rule {rule.slug} saved. {len(holders)} workload{pluralize(len(holders))} already "
            f"hold{'' if len(holders) != 1 else 's'} this combination through current grants, "
            f"which the rule does not undo: {shown}. Review their grants.",
        )


@requires("workloads.manage_catalogue")
@require_http_methods(["GET", "POST"])
def rule_edit_view(request, slug):
    rule = get_object_or_404(CombinationRule, slug=slug)
    form = CombinationRuleForm(request.POST or None, rule=rule)
    return _catalogue_form_view(
        request,
        form=form,
        template="workloads/rule_form.html",
        save=lambda data: _rule_saved(
            request, services.combination_rule_save(by=request.user, rule=rule, **data)
        ),
        done_url=reverse("workloads:rules"),
    )
