"""The WSGI entry point the servers load."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wsgi_entry_point_loads_the_urlconf_and_freezes_the_loaded_heap():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="governance.settings")
    env.setdefault("SECRET_KEY", "test-only-secret-key-not-used-anywhere-else-0123456789")
    probe = (
        "import gc, sys, governance.wsgi;"
        "print(gc.get_freeze_count(), 'governance.findings.views' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    frozen, views_loaded = out.stdout.split()
    assert int(frozen) > 10_000 and views_loaded == "True"
