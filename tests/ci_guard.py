"""In CI, a test that needs a service or Chromium must run: its skip becomes a failure.

On a developer's fresh machine those tests skip with the reason; CI (CI=true) installs
Chromium and has PostgreSQL and Redis, so a skip there means a broken setup.
"""

import os

import pytest

GUARDED_MARKERS = ("browser", "worker", "postgres", "redis")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if (
        os.environ.get("CI", "").lower() in {"1", "true", "yes"}
        and report.skipped
        and any(item.get_closest_marker(name) for name in GUARDED_MARKERS)
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, where it must run: {reason}"
    return report
