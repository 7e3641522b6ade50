"""The console in a real browser: Playwright driving Debian's Chromium against live_server.

Skips with the reason when Chromium is missing (CI turns that skip into a failure).
"""

import os
import re
from pathlib import Path

import pytest
from django.db import transaction

from governance.audit import audit_record
from governance.models import AuditEvent
from governance.roles import roles_sync
from tests.factories import ClassifiedWorkloadFactory, EntitlementFactory, WorkloadFactory
from workloads.models import SessionPolicy, Workload
from workloads.seed import seed_reference_data

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def reference_data(transactional_db):
    """live_server needs real commits, so each of these tests ends with a flush that takes the
    seeded tiers, tools and rule with it: put them back first. (serialized_rollback cannot:
    under Playwright's event loop Django hands the test a connection without the copy.)"""
    seed_reference_data()
    roles_sync()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are ordinary blocking calls, so Django's async guard is lifted.
    # Lifted for these tests only: the variable must not leak into later subprocesses.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.csp_errors = errors
    failed = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    page.failed_responses = failed
    yield page
    context.close()


def log_in(page, live_server, user):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def test_an_iam_admin_registers_classifies_and_tightens_a_workload(page, live_server, admin_user):
    log_in(page, live_server, admin_user)
    page.get_by_role("link", name="Workloads", exact=True).click()
    page.get_by_role("link", name="Register workload").click()

    page.get_by_label("Slug").fill("browser-agent")
    page.get_by_label("Name").fill("Browser agent")
    page.get_by_label("Purpose").fill("Answers questions about the handbook.")
    page.get_by_label("Model family").select_option("claude-3-7-sonnet")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(re.compile(r"/workloads/browser-agent/$"))
    assert page.locator("#classification").get_by_text("Unclassified").is_visible()

    classify = page.locator("#classify-form")
    classify.get_by_label("Tier").select_option("internal-read")
    classify.get_by_label("Rationale").fill("Reads the handbook; changes nothing.")
    classify.get_by_role("button", name="Save classification").click()
    page.locator("#classification .facts").get_by_text("Internal read").wait_for()
    assert Workload.objects.get(slug="browser-agent").tier.slug == "internal-read"

    policy = page.locator("#policy")
    policy.get_by_label("Max tool calls").fill("20")
    policy.get_by_role("button", name="Save session policy").click()
    page.locator('#policy [data-effective="max_tool_calls"]', has_text="20").wait_for()
    assert SessionPolicy.objects.get(workload__slug="browser-agent").max_tool_calls == 20

    trail = page.locator("#audit-trail")
    for action in ("workload.register", "workload.classify", "session_policy.update"):
        assert trail.get_by_text(action, exact=True).is_visible()
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(re.compile(r"/audit/$"))
    page.get_by_role("cell", name="session_policy.update").first.wait_for()
    assert not [e for e in page.csp_errors if "Content Security Policy" in e]


def test_every_page_in_the_navigation_loads_whole(page, live_server, admin_user):
    """Each page of the main navigation, with everything it pulls in (styles, scripts, the
    icon), loads without a failed request or a console error."""
    log_in(page, live_server, admin_user)
    links = page.locator(".mainnav a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= 8
    for href in hrefs:
        page.goto(f"{live_server.url}{href}")
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1, href
    assert page.locator('link[rel="icon"]').count() == 1
    assert page.failed_responses == []
    assert page.csp_errors == []


def test_a_field_error_appears_in_place_with_422(page, live_server, admin_user):
    workload = ClassifiedWorkloadFactory(slug="tight", name="Tight")
    log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/workloads/{workload.slug}/")
    statuses = []
    page.on("response", lambda r: statuses.append(r.status) if "session-policy" in r.url else None)
    policy = page.locator("#policy")
    policy.get_by_label("Max tool calls").fill("999999")
    policy.get_by_role("button", name="Save session policy").click()
    error = page.locator("#policy .errorlist")
    error.wait_for()
    assert "allows at most" in error.inner_text()
    assert statuses == [422]
    # In place: still the same page, the rest of it untouched, the typed value kept.
    assert page.url.endswith(f"/workloads/{workload.slug}/")
    assert page.locator("#audit-trail").is_visible()
    assert policy.get_by_label("Max tool calls").input_value() == "999999"


def test_an_owner_cannot_classify(page, live_server, owner):
    workload = WorkloadFactory(owner=owner, slug="owned-draft")
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/workloads/{workload.slug}/")
    page.get_by_role("heading", name=workload.name).wait_for()
    assert page.locator("#classify-form").count() == 0
    assert page.get_by_role("button", name="Save classification").count() == 0

    # A forged request from the owner's own session, with a valid CSRF token, is refused.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/workloads/{workload.slug}/classify/",
        form={"tier": "generation-only", "rationale": "Trust me."},
        headers={"X-CSRFToken": csrf, "Referer": f"{live_server.url}/"},
    )
    assert response.status == 403
    workload.refresh_from_db()
    assert workload.tier is None
    assert not AuditEvent.objects.filter(action="workload.classify").exists()


def test_a_refused_htmx_action_says_so_and_leaves_the_page_as_it_was(page, live_server, admin_user):
    workload = ClassifiedWorkloadFactory(slug="kept-policy")
    log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/workloads/{workload.slug}/")
    banner = page.locator("#request-error")
    assert banner.is_hidden()

    admin_user.groups.clear()  # the role is taken away while the page is open
    policy = page.locator("#policy")
    policy.get_by_label("Max tool calls").fill("7")
    policy.get_by_role("button", name="Save session policy").click()

    banner.wait_for(state="visible")
    assert "not allowed" in banner.inner_text()
    assert policy.get_by_label("Max tool calls").input_value() == "7"  # nothing swapped away
    assert SessionPolicy.objects.get(workload=workload).max_tool_calls is None


def test_an_htmx_action_after_logging_out_elsewhere_goes_to_log_in_and_back(
    page, live_server, admin_user
):
    workload = ClassifiedWorkloadFactory(slug="came-back")
    log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/workloads/{workload.slug}/")

    # The session ended (expired, or logged out in another tab); the CSRF cookie outlives it.
    kept = [c for c in page.context.cookies() if c["name"] != "sessionid"]
    page.context.clear_cookies()
    page.context.add_cookies(kept)
    page.locator("#policy").get_by_role("button", name="Save session policy").click()

    page.wait_for_url(re.compile(r"/login/\?next=/workloads/came-back/$"))
    page.get_by_label("Username").fill(admin_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/workloads/{workload.slug}/")


def test_on_a_phone_the_pages_fit_the_screen_and_wide_tables_scroll(browser, live_server, cast):
    workload = ClassifiedWorkloadFactory(
        slug="a-workload-with-a-rather-long-slug-for-a-narrow-screen"
    )
    EntitlementFactory(workload=workload)  # its revoke form has a label only screen readers see
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    log_in(page, live_server, cast["admin"])
    for path in ("/workloads/", f"/workloads/{workload.slug}/", "/decisions/", "/tokens/"):
        page.goto(f"{live_server.url}{path}")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, (path, page_width)
        topbar = page.locator(".topbar").bounding_box()
        last_link = page.locator(".mainnav a").last.bounding_box()
        assert last_link["y"] + last_link["height"] <= topbar["y"] + topbar["height"], path
    context.close()


def test_in_a_mid_sized_window_a_wide_table_scrolls_inside_its_box(browser, live_server, cast):
    """Between the phone layout and the full page (800 px), the decision log's nine columns
    with long reasons scroll inside the table's box, and the audit log's long values wrap:
    the page itself keeps the window's width."""
    from governance.models import Decision

    Decision.objects.create(
        workload="a-workload-with-a-rather-long-slug",
        tool="a-tool-with-a-long-slug-too",
        session="s-" + "x" * 60,
        decision="deny",
        reason_code="combination_forbidden",
        reasons=[
            {
                "code": "combination_forbidden",
                "message": "Calling this tool would complete the combination forbidden by "
                "rule lethal-trifecta with the tools already used in this session.",
            }
        ],
        policy_version=12345,
        latency_us=123456,
    )
    with transaction.atomic():  # an audited change whose value has no place to break
        audit_record(
            by=None,
            action="workload.updated",
            object_type="workload",
            object_id="1",
            before={"purpose": "short"},
            after={"purpose": "x" * 300},
        )
    context = browser.new_context(viewport={"width": 800, "height": 900})
    page = context.new_page()
    log_in(page, live_server, cast["admin"])
    page.goto(f"{live_server.url}/decisions/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    box = page.locator("#decision-table .table-scroll")
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls inside it
    page.goto(f"{live_server.url}/audit/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    context.close()


def test_many_requests_at_once_are_all_answered(page, live_server, admin_user):
    for n in range(20):
        ClassifiedWorkloadFactory(slug=f"busy-{n}")
    log_in(page, live_server, admin_user)

    statuses = page.evaluate(
        """async () => {
            const asks = Array.from({length: 24}, (_, i) =>
                fetch(i % 2 ? "/workloads/" : "/requests/", {headers: {"HX-Request": "true"}}));
            return (await Promise.all(asks)).map(r => r.status);
        }"""
    )

    assert statuses == [200] * 24


def test_back_after_paging_a_filtered_audit_log_keeps_the_filter_in_its_field(
    page, live_server, admin_user
):
    with transaction.atomic():
        for n in range(60):  # more than a page
            audit_record(
                by=None, action="probe.event", object_type="x", object_id=str(n), after={"n": n}
            )
    log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/audit/")
    page.get_by_label("From").fill("2020-01-01")
    page.wait_for_url(re.compile(r"since=2020-01-01"), wait_until="commit")
    page.wait_for_load_state("networkidle")
    page.get_by_role("link", name="Older →").click()
    page.wait_for_url(re.compile(r"before="), wait_until="commit")
    page.wait_for_load_state("networkidle")

    page.go_back()
    page.wait_for_url(re.compile(r"since=2020-01-01&until=$"), wait_until="commit")
    page.get_by_role("link", name="Older →").wait_for()  # the first page again
    assert page.get_by_label("From").input_value() == "2020-01-01"
    assert page.csp_errors == []


def test_an_htmx_swap_of_an_element_with_a_style_breaks_no_csp_rule(page, live_server, admin_user):
    """htmx copies the settled attributes of the element it replaces onto the new one; with
    `style` among them that is an inline style, which the CSP refuses, on every swap."""
    ClassifiedWorkloadFactory(slug="styled-one")
    log_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/workloads/")
    # A style set through the CSSOM (as scripts, extensions and transitions do) is allowed.
    page.locator("#workload-table").evaluate("e => { e.style.opacity = '1' }")
    page.get_by_label("Search").fill("styled")
    page.wait_for_url(re.compile(r"q=styled"), wait_until="commit")
    page.wait_for_load_state("networkidle")
    page.locator("#workload-table").get_by_text("styled-one").wait_for()
    assert page.csp_errors == []


def test_a_long_unbroken_name_wraps_instead_of_widening_the_page(browser, live_server, cast):
    """A slug may be 80 characters with nowhere to break (and a name 120): the dashboard,
    the lists and the detail pages keep the window's width."""
    from tests.evaluation.rows import make_session
    from tests.findings.api_rows import make_finding

    slug = "a" * 80
    workload = WorkloadFactory(slug=slug, name="N" * 120)  # unclassified: on the dashboard
    finding = make_finding(workload, session=make_session(workload))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server, cast["admin"])
    for path in (
        "/",
        "/workloads/",
        f"/workloads/{slug}/",
        "/findings/",
        f"/findings/{finding.pk}/",
        "/sessions/",
    ):
        page.goto(f"{live_server.url}{path}")
        assert slug in page.content(), path
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 1280, (path, page_width)
    context.close()


def test_the_console_shows_times_in_the_browsers_time_zone(browser, live_server, admin_user):
    """The browser names its zone in a cookie on the first page (the login page), so every
    page after logging in shows and reads times there, and says so."""
    context = browser.new_context(timezone_id="America/St_Johns")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live_server, admin_user)
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        assert cookies["mandate_tz"] == "America/St_Johns"
        page.goto(f"{live_server.url}/tokens/")
        assert "Times are shown in America/St_Johns" in page.locator("footer").inner_text()
        assert page.get_by_text("In America/St_Johns.").is_visible()  # beside the expiry field
    finally:
        context.close()
