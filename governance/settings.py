"""Mandate settings: one module, driven by environment variables.

With no environment at all it runs on the embedded default (SQLite file and
kombu's filesystem broker under ./var); production sets DATABASE_URL,
CELERY_BROKER_URL, REDIS_URL, SECRET_KEY and ALLOWED_HOSTS.
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MANDATE_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    """Read a setting, or the contents of the file named by NAME_FILE (for secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY is required when DEBUG is off (or set SECRET_KEY_FILE).")
    # DEBUG only (the local run command): a random key kept beside the embedded database.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    # workloads first: governance's post_migrate role sync needs its permissions to exist.
    "workloads",
    "governance",
]

MIDDLEWARE = [
    # Answers /api/v1/decisions itself, so the middleware below does no work for it.
    "governance.decisions.middleware.DecisionFastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "governance.request_id.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "governance.timezones.ViewerTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "governance.htmx.vary_on_htmx",
    # Innermost, so the page it renders gets the CSP, frame and Vary headers on the way out.
    "governance.method_not_allowed.ConsoleMethodNotAllowedMiddleware",
    # DEBUG only: API paths answer a machine-readable 404, not the HTML technical page.
    "governance.api_common.ApiNotFoundMiddleware",
]

ROOT_URLCONF = "governance.urls"
WSGI_APPLICATION = "governance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "governance.navigation.navigation",
            ],
        },
    },
]

# --- database -------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'mandate.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    if env_bool("DATABASE_POOL", True):
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 2),
            "max_size": env_int("DATABASE_POOL_MAX", 10),
            "timeout": 10,
        }
    if test_name := os.environ.get("DATABASE_TEST_NAME"):
        DATABASES["default"]["TEST"] = {"NAME": test_name}
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # WAL lets the web process read while the worker writes on the embedded default.
    DATABASES["default"]["OPTIONS"].update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "timeout": 20}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and shared decision state ---------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- recommendations: a grant unused this many days is listed for revocation
GRANT_UNUSED_DAYS = env_int("GRANT_UNUSED_DAYS", 30)

# --- decisions (governance/decisions; figures and trade-offs in bench/README.md) ---
DECISIONS_FAST_PATH = env_bool("DECISIONS_FAST_PATH", True)
DECISIONS_REDIS_PREFIX = os.environ.get("DECISIONS_REDIS_PREFIX", "mandate:")
DECISIONS_VERSION_CHECK_MS = env_int("DECISIONS_VERSION_CHECK_MS", 250)
DECISIONS_VERSION_LISTENER = env_bool("DECISIONS_VERSION_LISTENER", True)  # Redis pub/sub push
DECISIONS_BATCH_MAX = env_int("DECISIONS_BATCH_MAX", 100)
DECISIONS_MAX_BODY = env_int("DECISIONS_MAX_BODY", 256 * 1024)
DECISIONS_CONTEXT_MAX = env_int("DECISIONS_CONTEXT_MAX", 4096)  # bytes of JSON a check's context
DECISIONS_LOG_ENABLED = env_bool("DECISIONS_LOG", True)
DECISIONS_LOG_BACKGROUND = True
DECISIONS_LOG_FLUSH_MS = env_int("DECISIONS_LOG_FLUSH_MS", 500)
DECISIONS_LOG_BATCH = env_int("DECISIONS_LOG_BATCH", 2000)
DECISIONS_LOG_MAX_BUFFER = env_int("DECISIONS_LOG_MAX_BUFFER", 200_000)
# Benchmark-only floor views (bench/decisions.py); never set in a deployment.
DECISIONS_BENCH_FLOORS = env_bool("MANDATE_BENCH_FLOORS", False)

# --- auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Failed-login limits (governance/login_guard.py): per username and address, per address.
LOGIN_FAILURES_PER_USER = env_int("LOGIN_FAILURES_PER_USER", 5)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 30)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 900)  # seconds
LOGIN_CLIENT_IP_HEADER = os.environ.get("LOGIN_CLIENT_IP_HEADER", "")  # e.g. HTTP_X_REAL_IP
LOGIN_REDIRECT_URL = "dashboard"
# A token made in the console expires after this many days unless its maker clears the field;
# the tokens page marks those ending within TOKEN_EXPIRY_WARNING_DAYS.
SERVICE_TOKEN_DEFAULT_DAYS = env_int("SERVICE_TOKEN_DEFAULT_DAYS", 90)
TOKEN_EXPIRY_WARNING_DAYS = env_int("TOKEN_EXPIRY_WARNING_DAYS", 14)
LOGOUT_REDIRECT_URL = "login"

# --- i18n / static -------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

# --- security -------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
# A console sign-in lasts a working day, not Django's two weeks (an absolute limit: no write
# on every request to slide it).
SESSION_COOKIE_AGE = env_int("CONSOLE_SESSION_HOURS", 8) * 3600
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}

# --- email (Django 6.1 MAILERS) ----------------------------------------------------
# Console while DEBUG is on; otherwise SMTP, to EMAIL_HOST (a local MTA by default), so a
# production deploy never silently prints its mail.
_email_host = os.environ.get("EMAIL_HOST", "" if DEBUG else "localhost")
_email_relay = "EMAIL_HOST" in os.environ  # a named relay: submission port with TLS
if _email_host:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _email_host,
                "port": env_int("EMAIL_PORT", 587 if _email_relay else 25),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": env_str("EMAIL_HOST_PASSWORD"),
                "use_tls": env_bool("EMAIL_USE_TLS", _email_relay),
            },
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
if os.environ.get("EMAIL_FILE_PATH"):  # mail as files in a directory (demos, real-worker tests)
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": os.environ["EMAIL_FILE_PATH"]},
        }
    }
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "mandate@localhost")

# --- REST framework ---------------------------------------------------------------
# Annotated so the type checker lets code read nested entries (the throttle rates) back.
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.tokens.ServiceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["governance.api_common.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "governance.api_common.CursorlessPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "governance.openapi.StrictSchema",
    "EXCEPTION_HANDLER": "governance.api_common.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "ingest": os.environ.get("INGEST_RATE", "600/min"),
        "write": os.environ.get("WRITE_RATE", "120/min"),
    },
}
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Mandate API",
    "DESCRIPTION": (
        "Governance for reasoning-model workloads: the catalogue, entitlement workflow, "
        "decisions before each tool call, and usage ingestion. Services authenticate with "
        "`Authorization: Bearer <service token>`; browser users with their session."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status`; name each choice set (add yours here).
    "ENUM_NAME_OVERRIDES": {
        "WorkloadStatusEnum": "workloads.models.catalogue.Workload.Status",
        "GrantStatusEnum": "workloads.models.catalogue.Entitlement.Status",
    },
    "PREPROCESSING_HOOKS": ["governance.decisions.schema.decision_endpoint_hook"],
    # Explicit, so tags stay per concern although /v1/traces (OTLP) lives outside /api/v1.
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
}

# --- Celery -------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "broker"
    (_queue_dir / "out").mkdir(parents=True, exist_ok=True)
    (_queue_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_queue_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        # Broadcast/control messages (e.g. `celery inspect`); kombu's default is ./control.
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    # Publishing from a web request must not hang on an unreachable broker (ingest handoff).
    CELERY_BROKER_TRANSPORT_OPTIONS["socket_connect_timeout"] = env_int("BROKER_CONNECT_TIMEOUT", 2)
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("BROKER_CONNECT_TIMEOUT", 2)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# A task stuck on a lock or a slow query frees its worker: the soft limit raises inside the
# task (its transaction rolls back, so evaluation's claimed events return to the pending list
# for the sweep), the hard limit kills the child a minute later. Every task is bounded work
# (events in batches, re-evaluation in steps) taking well under a second. Prefork workers
# enforce them; the threads pool of `manage.py run` cannot.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = TIME_ZONE
# Ingestion: how long token and workload lookups are cached per process (bounded staleness).
INGEST_CACHE_SECONDS = env_int("INGEST_CACHE_SECONDS", 10)
# Beat entries are added by each concern in governance/schedule.py.
from governance import schedule as _schedule  # noqa: E402

CELERY_BEAT_SCHEDULE = _schedule.BEAT_SCHEDULE

# --- approvals ------------------------------------------------------------------------
# A pending request expires after this long; approvers are reminded REMINDER hours before.
APPROVAL_REQUEST_TTL_HOURS = env_int("APPROVAL_REQUEST_TTL_HOURS", 7 * 24)
# How long an approved session-run request lets its session call tools (a gated workload).
SESSION_APPROVAL_HOURS = env_int("SESSION_APPROVAL_HOURS", 24)
# A session window may raise a limit to at most this many times its tier's default.
SESSION_WINDOW_MAX_FACTOR = env_int("SESSION_WINDOW_MAX_FACTOR", 10)
APPROVAL_REMINDER_HOURS = env_int("APPROVAL_REMINDER_HOURS", 24)
# Owners hear about a grant, exception or session window this many days before it ends.
GRANT_EXPIRY_WARNING_DAYS = env_int("GRANT_EXPIRY_WARNING_DAYS", 3)
# Absolute links in emails, e.g. https://mandate.example.com (relative links without it).
MANDATE_BASE_URL = os.environ.get("MANDATE_BASE_URL", "")
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update(
    {
        "AccessRequestKindEnum": "governance.models.requests.AccessRequest.Kind",
        "ApprovalStepKindEnum": "governance.models.requests.ApprovalStep.Kind",
    }
)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "FindingStatusEnum": "governance.models.findings.Finding.Status",
        "FindingKindEnum": "governance.models.findings.FindingKind",
        "ContainmentActionEnum": "governance.models.findings.ContainmentAction.Action",
        "SessionStateEnum": "governance.usage.filters.SessionState",
        "SessionSourceEnum": "workloads.models.usage.Session.Source",
        "UsageEventTypeEnum": "workloads.models.usage.EventType",
        # Tool risk and finding severity share one scale; keep the name tools already had.
        "RiskEnum": "workloads.models.catalogue.RiskLevel",
    }
)

# --- logging ----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusals": {"()": "governance.log_filters.RefusalsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["refusals"]},
    },
}

# --- evaluation ---------------------------------------------------------------------------
# Offline similarity scorer for intent drift (dotted path to a class with score(a, b)).
MANDATE_DRIFT_SCORER = os.environ.get(
    "MANDATE_DRIFT_SCORER", "governance.evaluation.scoring.TfCosineScorer"
)
MANDATE_DRIFT_MIN_SIMILARITY = float(os.environ.get("MANDATE_DRIFT_MIN_SIMILARITY", "0.1"))
# Calls the decision endpoint allowed can land just after a gate was set or an approval
# ended (in flight, the version still spreading, clocks apart): evaluation does not flag
# them as unapproved session use within this many seconds of the boundary.
MANDATE_SESSION_GATE_GRACE_SECONDS = env_int("MANDATE_SESSION_GATE_GRACE_SECONDS", 10)
# An event that says it happened more than this long before Mandate received it is judged
# against grants, exceptions and session gates as of that much before its arrival: the time
# is the reporter's word, and backdating a call must not slip it past a revocation or a gate.
MANDATE_EVENT_MAX_LATENESS_SECONDS = env_int("MANDATE_EVENT_MAX_LATENESS_SECONDS", 900)
MANDATE_LOOP_WINDOW = env_int("MANDATE_LOOP_WINDOW", 20)  # recent calls a loop is counted in
MANDATE_EVALUATION_BATCH = env_int("MANDATE_EVALUATION_BATCH", 1000)  # events per transaction
MANDATE_EVALUATION_SNAPSHOT_SECONDS = env_int("MANDATE_EVALUATION_SNAPSHOT_SECONDS", 30)  # cache
WORKER_CONN_MAX_AGE = env_int("WORKER_CONN_MAX_AGE", 300)  # Celery worker connections, s
MANDATE_SWEEP_GRACE_SECONDS = env_int("MANDATE_SWEEP_GRACE_SECONDS", 60)
