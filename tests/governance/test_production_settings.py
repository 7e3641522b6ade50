"""Production safety does not depend on remembering a flag: DEBUG off is safe by default.

These run `manage.py` in a subprocess with a production-like environment, because settings
are read once per process (and the test process runs over plain http).
"""

import json
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

MANAGE = str(settings.BASE_DIR / "manage.py")
# The test process's own overrides, which production never sets.
_TEST_ONLY = {
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "EMAIL_HOST",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}
REAL_KEY = "k3y-" + "9fQz7pLx2VbN8mR4tW6yH1cJ5dS0aE3gK" * 2


def production_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
    env.update(
        DEBUG="0",
        SECRET_KEY=REAL_KEY,
        ALLOWED_HOSTS="mandate.example.com",
        MANDATE_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="governance.settings",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_debug_off(tmp_path):
    result = run([MANAGE, "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secret_key_is_required_with_debug_off(tmp_path):
    result = run([MANAGE, "check"], production_env(tmp_path, SECRET_KEY=None))
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_makemigrations_alone_runs_without_a_secret_key(tmp_path):
    env = production_env(tmp_path, SECRET_KEY=None)
    result = run([MANAGE, "makemigrations", "--check", "--dry-run"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_secret_key_may_come_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text(REAL_KEY + "\n")
    env = production_env(tmp_path, SECRET_KEY=None, SECRET_KEY_FILE=str(key_file))
    result = run([MANAGE, "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_off_is_secure_by_default(tmp_path):
    probe = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ("
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', "
        "'SECURE_HSTS_SECONDS', 'DEBUG', 'X_FRAME_OPTIONS')} | "
        "{'mailer': s.MAILERS['default']['BACKEND'], "
        "'csp': 'django.middleware.csp.ContentSecurityPolicyMiddleware' in s.MIDDLEWARE}))"
    )
    result = run(["-c", probe], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"]
    assert values["SECURE_SSL_REDIRECT"] and values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["mailer"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["csp"]


@pytest.mark.django_db
def test_pages_carry_a_csp_with_a_fresh_nonce(client):
    first = client.get(reverse("login"))
    second = client.get(reverse("login"))
    assert first.status_code == 200
    policy = first["Content-Security-Policy"]
    nonce = re.search(r"script-src 'self' 'nonce-([^']+)'", policy)
    assert nonce, policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert nonce.group(1) not in second["Content-Security-Policy"]


@pytest.mark.django_db
def test_api_responses_carry_the_policy_too(client):
    response = client.get("/api/v1/tiers")
    assert response.status_code == 401
    assert "default-src 'self'" in response["Content-Security-Policy"]
