"""The approval flow in a real browser: request, preview, approve, exception, grants.

Chromium from Debian (/usr/bin/chromium) driven by Playwright against pytest-django's live
server. Skips cleanly when Chromium is not installed.
"""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connections

from governance.celery import app as celery_app
from governance.models import AccessRequest, ApprovalDecision
from governance.roles import APPROVER, IAM_ADMIN, OWNER
from tests.factories import ClassifiedWorkloadFactory, UserFactory, tier

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "pw-for-tests-only"
TRIFECTA_LABELS = ["Web search", "Read files", "Run code"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        # While Playwright's loop runs, Django keeps this test's connection in a
        # context-local slot; close it here or it outlives the test database.
        connections.close_all()
        browser.close()


@pytest.fixture(autouse=True)
def _eager_tasks():
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def person(name, role):
    user = UserFactory(username=name)
    user.groups.add(Group.objects.get(name=role))
    return user


def signed_in(browser, live_server, username, problems):
    context = browser.new_context()
    page = context.new_page()
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "favicon" not in m.location.get("url", "")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def test_an_owner_requests_the_trifecta_and_it_is_approved_with_an_exception(browser, live_server):
    owner = person("olivia", OWNER)
    person("adam", APPROVER)
    person("bea", APPROVER)
    person("iris", IAM_ADMIN)
    workload = ClassifiedWorkloadFactory(
        slug="research-agent",
        name="Research agent",
        owner=owner,
        tier=tier("boundary-crossing"),
    )
    problems: list[str] = []
    base = live_server.url

    # The owner picks web + file + code tools and sees the trifecta warning live.
    page = signed_in(browser, live_server, "olivia", problems)
    page.goto(f"{base}/requests/new/?workload={workload.slug}")
    for label in TRIFECTA_LABELS:
        page.get_by_label(label).check()
    warning = page.locator(".impact-exception")
    warning.wait_for()
    assert "Lethal trifecta" in warning.inner_text()
    assert "3 approvals needed" in page.locator("#impact").inner_text()
    page.fill("textarea[name=justification]", "Analyse uploaded datasets with web context.")
    page.fill("input[name=duration_days]", "14")
    page.get_by_role("button", name="Submit request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    request_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    request_url = f"{base}/requests/{request_id}/"

    # The owner's own approve button is absent, and the server refuses a forged approval.
    assert page.locator("button[value=approve]").count() == 0
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['x-csrftoken']")
    forged = page.request.post(
        f"{request_url}decide/",
        form={"verdict": "approve", "comment": "mine"},
        headers={"X-CSRFToken": token, "Referer": request_url},
    )
    assert forged.status == 403
    assert not ApprovalDecision.objects.exists()

    # A first approver approves inline from the queue; a second does the same.
    for name in ("adam", "bea"):
        approver_page = signed_in(browser, live_server, name, problems)
        approver_page.goto(f"{base}/requests/")
        row = approver_page.locator(f"#request-{request_id}")
        row.locator("input[name=comment]").fill(f"{name}: scoped to the sandbox.")
        row.get_by_role("button", name="Approve", exact=True).click()
        done = 1 if name == "adam" else 2
        approver_page.locator(f"#request-{request_id}").get_by_text(
            f"{done}/3 approvals"
        ).wait_for()
        approver_page.context.close()

    # An iam_admin grants the exception with a written justification.
    admin_page = signed_in(browser, live_server, "iris", problems)
    admin_page.goto(request_url)
    admin_page.fill(
        "textarea[name=justification]",
        "Code runs in a network-isolated sandbox; the files are the team's own datasets.",
    )
    admin_page.get_by_role("button", name="Approve with exception").click()
    admin_page.wait_for_url(request_url)
    assert "Approved" in admin_page.locator("h1").inner_text()

    # The grants appear on the workload page.
    page.goto(f"{base}/workloads/{workload.slug}/")
    grants = page.locator("#grants").inner_text()
    for label in TRIFECTA_LABELS:
        assert label in grants
    assert grants.lower().count("active") >= 3
    assert "Lethal trifecta" in grants and "network-isolated sandbox" in grants

    assert AccessRequest.objects.get(pk=request_id).status == "approved"
    assert problems == []


def test_the_request_form_shows_the_fields_of_the_kind_picked(browser, live_server):
    owner = person("olivia", OWNER)
    workload = ClassifiedWorkloadFactory(slug="research-agent", owner=owner)
    problems: list[str] = []
    page = signed_in(browser, live_server, "olivia", problems)
    page.goto(f"{live_server.url}/requests/new/?workload={workload.slug}")
    tools = page.locator("fieldset.for-tools")
    window = page.locator("fieldset.for-session_window")
    run = page.locator("fieldset.for-session_run")
    duration = page.locator("input[name=duration_days]")
    assert tools.is_visible() and duration.is_visible()
    assert not window.is_visible() and not run.is_visible()

    page.select_option("select[name=kind]", "session_window")
    assert window.is_visible() and duration.is_visible()
    assert not tools.is_visible() and not run.is_visible()

    page.select_option("select[name=kind]", "session_run")
    assert run.is_visible()
    assert not tools.is_visible() and not window.is_visible() and not duration.is_visible()

    # A tool ticked before switching kind is still sent; the refusal shows the tools again,
    # with the error, though the kind picked hides them: no error is hidden.
    page.select_option("select[name=kind]", "tools")
    page.get_by_label("Web search").check()
    page.select_option("select[name=kind]", "session_window")
    page.fill("input[name=max_tool_calls]", "500")
    page.fill("textarea[name=justification]", "Longer research runs.")
    page.get_by_role("button", name="Submit request").click()
    page.locator("fieldset.for-tools .errorlist").wait_for()
    assert "asks for no tools" in tools.inner_text()
    assert page.locator("select[name=kind]").input_value() == "session_window"
    assert [p for p in problems if "status of 422" not in p] == []  # the 422 is deliberate


def test_an_iam_admin_revokes_an_exception_after_confirming_and_errors_show_in_place(
    browser, live_server
):
    from datetime import timedelta

    from django.utils import timezone

    from workloads.models import CombinationRule, RuleException

    person("iris", IAM_ADMIN)
    workload = ClassifiedWorkloadFactory(slug="research-agent", tier=tier("boundary-crossing"))
    exception = RuleException.objects.create(
        workload=workload,
        rule=CombinationRule.objects.get(slug="lethal-trifecta"),
        justification="Sandboxed pilot.",
        valid_until=timezone.now() + timedelta(days=5),
    )
    problems: list[str] = []
    page = signed_in(browser, live_server, "iris", problems)
    dialogs: list[str] = []

    def confirm(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.goto(f"{live_server.url}/workloads/{workload.slug}/")
    form = page.locator(f"#exception-revoke-{exception.pk}")
    form.get_by_role("button", name="Revoke").click()
    form.locator(".errorlist").wait_for()  # 422: the form again, with the error, in place
    assert "required" in form.inner_text()
    assert dialogs == []  # nothing to confirm: without a reason it cannot go through

    form.get_by_label("Reason for revoking").fill("The sandbox reaches the network.")
    form.get_by_role("button", name="Revoke").click()
    page.locator("#access").get_by_text("The sandbox reaches the network.").wait_for()
    assert dialogs == ["Revoke this exception? Its rule applies again at once."]
    assert "revoked" in page.locator(f"#exception-{exception.pk}").inner_text().lower()
    assert page.locator(f"#exception-revoke-{exception.pk}").count() == 0
    exception.refresh_from_db()
    assert exception.status == "revoked"
    # The browser logs the deliberate 422 as a failed load; nothing else may go wrong.
    assert [p for p in problems if "status of 422" not in p] == []


def test_an_iam_admin_denies_an_exception_request_leaving_the_justification_empty(
    browser, live_server
):
    from governance.approvals import services
    from workloads.models import Tool

    owner = person("olivia", OWNER)
    person("iris", IAM_ADMIN)
    workload = ClassifiedWorkloadFactory(
        slug="research-agent", owner=owner, tier=tier("boundary-crossing")
    )
    req = services.access_request_create(
        by=owner,
        workload=workload,
        tools=list(Tool.objects.filter(name__in=TRIFECTA_LABELS)),
        justification="Analyse datasets.",
        duration_days=7,
    )
    problems: list[str] = []
    page = signed_in(browser, live_server, "iris", problems)
    request_url = f"{live_server.url}/requests/{req.pk}/"
    page.goto(request_url)
    page.fill("#decide input[name=comment]", "No sandbox yet.")

    # Approving needs the justification: the browser holds the form back.
    page.get_by_role("button", name="Approve with exception").click()
    assert page.eval_on_selector("textarea[name=justification]", "t => !t.validity.valid")
    # Denying does not.
    page.get_by_role("button", name="Deny").click()
    page.locator("h1").get_by_text("Denied").wait_for()

    req.refresh_from_db()
    assert req.status == "denied" and not req.decisions.filter(verdict="approve").exists()
    assert problems == []


def test_the_status_filter_is_disabled_while_awaiting_my_decision(browser, live_server):
    person("adam", APPROVER)
    problems: list[str] = []
    page = signed_in(browser, live_server, "adam", problems)
    page.goto(f"{live_server.url}/requests/?view=all")
    status = page.locator("select[name=status]")
    assert status.is_enabled()
    page.select_option("select[name=view]", "awaiting")
    page.wait_for_url(re.compile(r"view=awaiting"))
    page.locator("#status-hint").wait_for()
    assert page.locator("select[name=status]").is_disabled()
    page.select_option("select[name=view]", "all")
    page.wait_for_url(re.compile(r"view=all"))
    page.locator("#status-hint").wait_for(state="detached")
    assert page.locator("select[name=status]").is_enabled()
    assert problems == []
