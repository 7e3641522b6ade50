import re
from datetime import timedelta

import pytest
from django.urls import reverse

from governance import dashboard
from tests.factories import ClassifiedWorkloadFactory, WorkloadFactory

pytestmark = pytest.mark.django_db


def test_the_dashboard_draws_counts_as_svg_bars_without_style_attributes(client, auditor):
    ClassifiedWorkloadFactory.create_batch(3)
    WorkloadFactory.create_batch(2)
    client.force_login(auditor)
    page = client.get(reverse("dashboard")).content.decode()
    assert '<g class="bar bar-active" data-label="Active" data-count="3">' in page
    assert '<g class="bar bar-unclassified" data-label="Unclassified" data-count="2">' in page
    assert '<g class="bar bar-tier-30" data-label="Internal act" data-count="3">' in page
    assert not re.search(r"\sstyle=", page)


def test_the_dashboard_lists_the_unclassified_queue(client, admin_user):
    WorkloadFactory(slug="needs-a-tier")
    ClassifiedWorkloadFactory(slug="has-a-tier")
    client.force_login(admin_user)
    queue = client.get(reverse("dashboard")).context["unclassified"]
    assert [w.slug for w in queue] == ["needs-a-tier"]


def test_bars_scale_to_the_largest_count():
    chart = dashboard.bar_chart([("a", 10, "x"), ("b", 5, "y"), ("c", 0, "z")])
    widths = [bar["width"] for bar in chart["bars"]]
    assert widths[0] == chart["track_width"] and widths[1] == widths[0] // 2 and widths[2] == 0


def test_other_concerns_add_dashboard_panels_for_users_with_the_permission(
    client, owner, auditor, monkeypatch, tmp_path, settings
):
    (tmp_path / "panel.html").write_text(
        '<section class="card">Panel says {{ panel.word }}</section>'
    )
    engine = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**engine, "DIRS": [*engine["DIRS"], tmp_path]}]
    panel = dashboard.DashboardPanel(
        "panel.html", "governance.view_audit_log", lambda request: {"word": "hello"}
    )
    monkeypatch.setattr(dashboard, "PANELS", [panel])
    client.force_login(auditor)
    assert "Panel says hello" in client.get(reverse("dashboard")).content.decode()
    client.force_login(owner)
    assert "Panel says" not in client.get(reverse("dashboard")).content.decode()


def test_a_wider_label_column_moves_the_bars_not_their_length():
    narrow = dashboard.bar_chart([("a", 10, "x")])
    wide = dashboard.bar_chart([("a", 10, "x")], label_width=200)
    assert wide["bars"][0]["x"] == 200 and wide["label_x"] == 192
    assert wide["track_width"] == narrow["track_width"]
    assert wide["width"] == narrow["width"] + 200 - narrow["bars"][0]["x"]


def test_the_first_column_label_starts_inside_the_chart():
    from datetime import date, timedelta

    from governance.findings.charts import bar_chart

    day = date(2026, 11, 1)
    bars = bar_chart([{"day": day + timedelta(days=i), "n": i} for i in range(14)])["bars"]
    assert (bars[0]["tx"], bars[0]["anchor"]) == (0, "start")
    assert bars[7]["anchor"] == "middle" and bars[7]["tx"] > 0


def test_readers_of_the_decision_log_see_the_days_decisions_on_the_dashboard(
    client, reviewer, owner
):
    from django.utils import timezone

    from governance.models import DecisionCount

    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    DecisionCount.objects.create(hour=hour, decision="allow", reason_code="allowed", n=40)
    DecisionCount.objects.create(hour=hour, decision="deny", reason_code="tool_not_granted", n=3)
    client.force_login(reviewer)
    page = client.get(reverse("dashboard")).content.decode()
    assert "24 hours: 3 of 43 decisions" in page
    # The link opens the chart's 24 hours of the log, not every denial ever.
    first_hour = timezone.localtime(hour - timedelta(hours=23))
    assert f'href="/decisions/?decision=deny&amp;since={first_hour:%Y-%m-%dT%H:%M}"' in page
    client.force_login(owner)  # may not read the decision log
    assert 'id="decisions-panel"' not in client.get(reverse("dashboard")).content.decode()
