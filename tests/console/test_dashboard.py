import re

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
