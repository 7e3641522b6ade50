"""A reviewer works a finding in a real browser: queue → finding → session timeline → ack."""

import pytest
from playwright.sync_api import expect, sync_playwright

from governance.evaluation.services import events_evaluate
from governance.findings import services
from governance.models import ContainmentAction, Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, tier
from tests.findings.api_rows import make_finding

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_a_reviewer_follows_a_finding_to_its_timeline_and_acknowledges_it(
    live_server, reviewer, monkeypatch
):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    session = make_session(workload, request="Summarise ticket 4411 for the agent")
    events_evaluate(
        **id_range(
            add_events(
                session,
                ("session_start", 0, {"content": "Summarise ticket 4411 for the agent"}),
                ("tool_call", 2, {"tool": "send-email", "duration_ms": 340}),
            )
        )
    )
    finding = Finding.objects.get()
    # Playwright's sync API runs an event loop; the live server's ORM calls are in threads.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{live_server.url}/login/?next=/findings/")
        page.fill("input[name=username]", "reviewer")
        page.fill("input[name=password]", "pw-for-tests-only")
        page.click("button[type=submit]")

        expect(page.locator("h1")).to_have_text("Findings")
        expect(page.locator('[data-count="open"]')).to_have_text("1")
        page.get_by_role("link", name="Unentitled tool use").click()

        expect(page.locator("h1")).to_contain_text("Unentitled tool use")
        page.get_by_role("link", name=session.external_id).click()

        # internal-read logs metadata only: the request is not shown, and the page says why.
        expect(page.get_by_test_id("content-withheld").first).to_contain_text("metadata only")
        expect(page.get_by_text("Summarise ticket 4411")).to_have_count(0)
        flagged = page.locator(f"#event-{finding.evidence[0]}")
        expect(flagged).to_have_class("step step-tool_call flagged")
        expect(flagged).to_contain_text("340 ms")
        flagged.get_by_role("link", name="Unentitled tool use").click()

        page.get_by_role("button", name="Acknowledge").click()
        expect(page.get_by_test_id("finding-status")).to_have_text("Acknowledged")
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e]
    finding.refresh_from_db()
    assert finding.status == "acknowledged"


def _signed_in(p, live_server, username: str, path: str):
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    page = browser.new_page()
    page.goto(f"{live_server.url}/login/?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-for-tests-only")
    page.click("button[type=submit]")
    return browser, page


def test_a_double_click_on_contain_contains_once(live_server, reviewer, monkeypatch):
    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser, page = _signed_in(p, live_server, "reviewer", f"/findings/{finding.pk}/")
        posts = []
        page.on(
            "request",
            lambda r: posts.append(r.url) if r.method == "POST" and "/contain/" in r.url else None,
        )
        page.on("dialog", lambda dialog: dialog.accept())
        contain = page.locator("#contain-form")
        contain.locator("select[name=action]").select_option("suspend_workload")
        contain.locator("input[name=reason]").fill("Looping on prod")
        contain.get_by_role("button", name="Contain").dblclick()
        expect(page.locator(".messages")).to_contain_text("Contained.")
        page.wait_for_load_state("networkidle")
        expect(page.locator(".messages")).not_to_contain_text("already does that")
        browser.close()
    assert len(posts) == 1
    assert ContainmentAction.objects.filter(finding=finding).count() == 1


def test_select_all_applies_a_status_to_every_finding_on_the_page(
    live_server, reviewer, monkeypatch
):
    workload = ClassifiedWorkloadFactory(tier=tier("internal-read"))
    findings = [make_finding(workload) for _ in range(3)]
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser, page = _signed_in(p, live_server, "reviewer", "/findings/")
        select_all = page.get_by_label("Select every finding on this page")
        select_all.check()
        for finding in findings:
            expect(page.get_by_label(f"Select finding {finding.pk}")).to_be_checked()
        page.get_by_label(f"Select finding {findings[0].pk}").uncheck()
        expect(select_all).not_to_be_checked()
        assert select_all.evaluate("box => box.indeterminate")
        select_all.check()
        page.select_option("select[name=new_status]", "acknowledged")
        page.get_by_role("button", name="Apply to selected").click()
        expect(page.get_by_test_id("bulk-outcome")).to_have_text("3 updated.")
        browser.close()
    assert set(Finding.objects.values_list("status", flat=True)) == {"acknowledged"}


def test_a_stale_page_keeps_the_comment_and_says_who_acted_first(
    live_server, reviewer, admin_user, monkeypatch
):
    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser, page = _signed_in(p, live_server, "reviewer", f"/findings/{finding.pk}/")
        expect(page.get_by_test_id("finding-status")).to_have_text("Open")
        services.finding_set_status(finding=finding, status="acknowledged", by=admin_user)
        page.get_by_label("Comment (optional)").fill("Owner says: a drill")
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("#status-form [role=alert]")).to_contain_text(
            "admin marked this finding acknowledged at"
        )
        expect(page.get_by_label("Comment (optional)")).to_have_value("Owner says: a drill")
        expect(page.get_by_test_id("finding-status")).to_have_text("Acknowledged")
        expect(page.locator(".messages")).to_have_count(0)
        browser.close()
    assert not finding.comments.exists()


def test_contain_stays_disabled_while_the_page_moves_on(live_server, reviewer, monkeypatch):
    """The answer's HX-Redirect leaves the old page up until the new one arrives: a click
    meanwhile must not contain a second time."""
    finding = make_finding(ClassifiedWorkloadFactory(tier=tier("internal-read")))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser, page = _signed_in(p, live_server, "reviewer", f"/findings/{finding.pk}/")
        # The redirect's page answers 204: the browser keeps the old page up, as it does
        # while a slow page loads.
        page.route(f"**/findings/{finding.pk}/", lambda route: route.fulfill(status=204))
        posts = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.on("dialog", lambda dialog: dialog.accept())
        contain = page.locator("#contain-form")
        contain.locator("input[name=reason]").fill("Looping on prod")
        button = contain.get_by_role("button", name="Contain")
        with page.expect_response(lambda r: "/contain/" in r.url):
            button.click()
        page.wait_for_timeout(300)
        expect(button).to_be_disabled()
        button.click(force=True)
        page.wait_for_timeout(300)
        browser.close()
    assert len(posts) == 1
    assert ContainmentAction.objects.filter(finding=finding).count() == 1
