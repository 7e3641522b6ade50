"""A reviewer works a finding in a real browser: queue → finding → session timeline → ack."""

import pytest
from playwright.sync_api import expect, sync_playwright

from governance.evaluation.services import events_evaluate
from governance.models import Finding
from tests.evaluation.rows import add_events, id_range, make_session
from tests.factories import ClassifiedWorkloadFactory, tier

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
