"""Berth settings: one file, read from the environment.

With no configuration at all Berth runs on SQLite (WAL) and Celery's file-system
broker under ``var/``; ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to
PostgreSQL and Redis.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def asset_dir(name):
    """templates/ or static/: in the checkout, or where `pip install .` put them (pyproject's data-files)."""
    import sys

    here = BASE_DIR / name
    return here if here.is_dir() else Path(sys.prefix) / "share" / "berth" / name


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name, default=""):
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker/K8s secrets)."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at {path!r}, which cannot be read: {exc}") from exc
    return default


DEBUG = env_bool("DEBUG")

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY or SECRET_KEY_FILE (make run and make test do this "
            "for you), or DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Everything Berth writes by default (database, broker, media, upload parts) lives here: var/ of
# the checkout, or BERTH_VAR_DIR. An installed Berth (no manage.py beside its packages) must be
# told where: the default would write the database into site-packages.
if not os.environ.get("BERTH_VAR_DIR") and not (BASE_DIR / "manage.py").is_file():
    raise ImproperlyConfigured(
        "BERTH_VAR_DIR is not set. An installed Berth needs a folder for its data (the SQLite database, "
        "the file-system broker, uploads and media): set BERTH_VAR_DIR, e.g. BERTH_VAR_DIR=/var/lib/berth."
    )
VAR_DIR = Path(env_str("BERTH_VAR_DIR", str(BASE_DIR / "var"))).resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",  # its templates, for FORM_RENDERER below
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "common",  # errors, access, audit, API tokens and API helpers every app uses
    "dashboard",
    "registry",
    "jobs",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "common.middleware.RefuseNulCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.middleware.ContentSecurityPolicy",
    "common.middleware.BerthErrorPages",
]

AUTHENTICATION_BACKENDS = ["dashboard.login.ThrottledModelBackend"]
BERTH_LOGIN_MAX_FAILURES = env_int("BERTH_LOGIN_MAX_FAILURES", 5)
BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("BERTH_LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
BERTH_LOGIN_LOCKOUT_MINUTES = env_int("BERTH_LOGIN_LOCKOUT_MINUTES", 15)


# Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed when
# deciding a client's address (log-in throttling per address). Empty: REMOTE_ADDR only.
def env_networks(name):
    networks = []
    for part in filter(None, (p.strip() for p in os.environ.get(name, "").split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {part!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return networks


BERTH_TRUSTED_PROXIES = env_networks("BERTH_TRUSTED_PROXIES")

# Browser-facing security. BERTH_HTTPS=1 (production behind TLS) makes cookies secure, redirects
# plain HTTP, sends HSTS and trusts the proxy's X-Forwarded-Proto; `manage.py check --deploy`
# then reports nothing.
BERTH_HTTPS = env_bool("BERTH_HTTPS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = BERTH_HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BERTH_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if BERTH_HTTPS else 0)
# Subdomains and the preload list follow by default (set them to 0 where a subdomain still serves HTTP).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", BERTH_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", BERTH_HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BERTH_HTTPS else None
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BERTH_CONTENT_SECURITY_POLICY = env_str(
    "BERTH_CONTENT_SECURITY_POLICY",
    "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
)

# Forms render through TEMPLATES, so templates/django/forms/ overrides Django's field layout
# (help text escaped, errors beside their field, checkboxes before their labels).
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [asset_dir("templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'berth.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at
    # the start of a transaction, so two writers queue (up to the timeout) instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory: tests start real worker processes that must see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["PASSWORD"] = env_secret("DATABASE_PASSWORD", DATABASES["default"].get("PASSWORD", ""))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [asset_dir("static")]
STATIC_ROOT = VAR_DIR / "static"
os.makedirs(STATIC_ROOT, exist_ok=True)
# `manage.py collectstatic` (make run does it; the tests' session fixture too) writes every file
# under a hashed name with .gz and .br copies; WhiteNoise serves the smallest one the browser
# accepts, cached for a year. Before collectstatic (or with DEBUG=1) pages name the plain files,
# which WhiteNoise serves from the source folders (uncompressed, cached for 60 s).
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
WHITENOISE_KEEP_ONLY_HASHED_FILES = True

MEDIA_ROOT = Path(env_str("BERTH_MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "/media/"  # never served directly: downloads go through a permission-checked view
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "dashboard.staticfiles.BerthStaticFilesStorage"},
}
# Artifacts and datasets in an S3-compatible bucket (pip install ".[s3]"); credentials come from
# boto3's usual sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role).
BERTH_S3_BUCKET = env_str("BERTH_S3_BUCKET")
if BERTH_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BERTH_S3_BUCKET,
            "endpoint_url": env_str("BERTH_S3_ENDPOINT_URL") or None,
            "region_name": env_str("BERTH_S3_REGION") or None,
            "location": env_str("BERTH_S3_PREFIX"),
            "default_acl": None,
            "file_overwrite": False,
        },
    }

# Uploads: streamed to disk next to the media root (so finishing one is a rename, not a copy)
# with the sha256 computed while the bytes arrive.
BERTH_UPLOAD_DIR = Path(env_str("BERTH_UPLOAD_DIR", str(VAR_DIR / "uploads"))).resolve()
BERTH_MAX_UPLOAD_BYTES = env_int("BERTH_MAX_UPLOAD_BYTES", 4 * 1024**3)
BERTH_MAX_CHUNK_BYTES = env_int("BERTH_MAX_CHUNK_BYTES", 64 * 1024**2)
# ONNX files up to this size are fully parsed and checked at intake; larger ones are only
# walked structurally (flat memory) and fully parsed by the validate job on a worker.
BERTH_INTAKE_PARSE_MAX_BYTES = env_int("BERTH_INTAKE_PARSE_MAX_BYTES", 64 * 1024**2)
BERTH_UPLOAD_EXPIRY_HOURS = env_int("BERTH_UPLOAD_EXPIRY_HOURS", 72)
os.makedirs(BERTH_UPLOAD_DIR / "tmp", exist_ok=True)
FILE_UPLOAD_HANDLERS = ["registry.uploads.HashingFileUploadHandler"]
FILE_UPLOAD_TEMP_DIR = str(BERTH_UPLOAD_DIR / "tmp")
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "common.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["common.access.RolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "common.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Berth API",
    "DESCRIPTION": "Registry, jobs, comparisons, endpoints, monitoring, alerts and tokens of Berth, for ML models. "
    "Authenticate with `Authorization: Token <key>`; the dashboard is at `/`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.api.document_unsupported_media_type",
        "common.api.tag_by_app",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "jobs.models.Job.Kind",
        "JobStatusEnum": "jobs.models.Job.Status",
        "DatasetKindEnum": "registry.models.Dataset.Kind",
        "VersionStatusEnum": "registry.models.ModelVersion.Status",
        "UploadStatusEnum": "registry.models.Upload.Status",
        "PromotionGateKindEnum": "registry.models.PromotionGate.Kind",
        "ApiTokenScopeEnum": "common.models.ApiToken.Scope",
        "BenchmarkScopeEnum": "jobs.models.BenchmarkResult.Scope",
    },
}

# Celery: configured here under the CELERY_ namespace (dashboard/celery.py reads it).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BERTH_BROKER_DIR = VAR_DIR / "broker"
# On GPU workers: TensorRT engines and int8 calibration tables, one folder per artifact (sha256).
BERTH_ENGINE_CACHE_DIR = Path(env_str("BERTH_ENGINE_CACHE_DIR", str(VAR_DIR / "engine-cache"))).resolve()
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # in and out are the same folder: producers and consumers meet there.
        "data_folder_in": str(BERTH_BROKER_DIR / "queue"),
        "data_folder_out": str(BERTH_BROKER_DIR / "queue"),
        "processed_folder": str(BERTH_BROKER_DIR / "processed"),
        "store_processed": False,
        # Needed for remote control: ping, revoke, inspect.
        "control_folder": str(BERTH_BROKER_DIR / "control"),
    }
    for _folder in ("queue", "processed", "control"):
        os.makedirs(BERTH_BROKER_DIR / _folder, exist_ok=True)
else:
    # With acks_late a message un-acked for longer than this is re-delivered: keep it above
    # the longest hard time limit of any job.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Job state lives in the Job row; Celery carries only the job id and stores no results.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
# Ack after the job ran, so a worker that dies mid-job gives the message back to the broker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Jobs are long: a worker takes one at a time instead of hoarding a queue.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A broker blip (Redis restarted) must not stop running jobs: they finish and record their result
# in the Job row, and a message the broker re-delivers finds the job done. (Celery 6 turns this on.)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Chatty libraries: the exporter's pass-by-pass INFO lines and torchvision notices.
        "onnx_ir": {"level": "WARNING"},
        "onnxscript": {"level": "WARNING"},
        "torch.onnx._internal.exporter._registration": {"level": "ERROR"},
        # The file-system broker has no hostname; kombu warns about it on every connection.
        "kombu.connection": {"level": "ERROR"},
    },
}

# Jobs and workers report a heartbeat; a job silent for BERTH_JOB_LOST_AFTER_SECONDS is failed
# as "worker lost", a worker silent for BERTH_WORKER_LIVE_SECONDS is shown as gone.
BERTH_JOB_HEARTBEAT_SECONDS = env_int("BERTH_JOB_HEARTBEAT_SECONDS", 10)
BERTH_JOB_LOST_AFTER_SECONDS = env_int("BERTH_JOB_LOST_AFTER_SECONDS", 90)
BERTH_JOB_REQUEUE_AFTER_SECONDS = env_int("BERTH_JOB_REQUEUE_AFTER_SECONDS", 600)
# How often beat runs the reaper (fails jobs of lost workers) and the reconciler (sends queued
# jobs the broker does not have: never sent while it was down, or forgotten by a restart).
BERTH_REAP_SECONDS = env_int("BERTH_REAP_SECONDS", 30)
BERTH_REQUEUE_SECONDS = env_int("BERTH_REQUEUE_SECONDS", 60)
BERTH_WORKER_HEARTBEAT_SECONDS = env_int("BERTH_WORKER_HEARTBEAT_SECONDS", 15)
BERTH_WORKER_LIVE_SECONDS = env_int("BERTH_WORKER_LIVE_SECONDS", 60)

# Serving and telemetry: what the spec tells every berth-serve runtime.
BERTH_TELEMETRY_FLUSH_SECONDS = env_int("BERTH_TELEMETRY_FLUSH_SECONDS", 10)
BERTH_TELEMETRY_FLUSH_REQUESTS = env_int("BERTH_TELEMETRY_FLUSH_REQUESTS", 1000)
BERTH_TELEMETRY_MAX_BYTES = env_int("BERTH_TELEMETRY_MAX_BYTES", 2 * 1024**2)
BERTH_TELEMETRY_MAX_AGE_DAYS = env_int("BERTH_TELEMETRY_MAX_AGE_DAYS", 7)
BERTH_SERVING_MAX_REQUEST_BYTES = env_int("BERTH_SERVING_MAX_REQUEST_BYTES", 10 * 1024**2)
# After "New token" the old endpoint token keeps working this long, so running replicas can be
# restarted with the new one instead of being locked out at once (0: the old one stops at once).
BERTH_TOKEN_GRACE_MINUTES = env_int("BERTH_TOKEN_GRACE_MINUTES", 10)
# A replica that has not reported for this long is shown as silent (a few missed flushes).
BERTH_REPLICA_SILENT_SECONDS = env_int("BERTH_REPLICA_SILENT_SECONDS", 45)

# Monitoring: minute windows are rolled up into 15-minute, hour and 6-hour windows every minute
# and kept BERTH_MINUTE_WINDOWS_HOURS; 15-minute windows are kept BERTH_QUARTER_WINDOWS_DAYS,
# hours and 6 hours BERTH_HOUR_WINDOWS_DAYS. Alert rules are evaluated, and external
# servers scraped, every BERTH_ALERT_EVALUATE_SECONDS / BERTH_SCRAPE_SECONDS.
BERTH_MINUTE_WINDOWS_HOURS = env_int("BERTH_MINUTE_WINDOWS_HOURS", 24)
BERTH_QUARTER_WINDOWS_DAYS = env_int("BERTH_QUARTER_WINDOWS_DAYS", 7)
BERTH_HOUR_WINDOWS_DAYS = env_int("BERTH_HOUR_WINDOWS_DAYS", 90)
BERTH_ALERT_EVALUATE_SECONDS = env_int("BERTH_ALERT_EVALUATE_SECONDS", 60)
BERTH_SCRAPE_SECONDS = env_int("BERTH_SCRAPE_SECONDS", 15)

CELERY_BEAT_SCHEDULE = {
    "expire-uploads": {"task": "registry.expire_uploads", "schedule": 3600.0, "options": {"queue": "default"}},
    "reap-lost-jobs": {
        "task": "jobs.reap",
        "schedule": float(BERTH_REAP_SECONDS),
        "options": {"queue": "default", "expires": BERTH_REAP_SECONDS},
    },
    "requeue-lost-jobs": {
        "task": "jobs.requeue",
        "schedule": float(BERTH_REQUEUE_SECONDS),
        "options": {"queue": "default", "expires": BERTH_REQUEUE_SECONDS},
    },
    "compact-windows": {"task": "monitoring.compact", "schedule": 60.0, "options": {"queue": "default", "expires": 60}},
    "evaluate-alerts": {
        "task": "monitoring.evaluate_alerts",
        "schedule": float(BERTH_ALERT_EVALUATE_SECONDS),
        "options": {"queue": "default", "expires": BERTH_ALERT_EVALUATE_SECONDS},
    },
    "scrape-endpoints": {
        "task": "monitoring.scrape",
        "schedule": float(BERTH_SCRAPE_SECONDS),
        "options": {"queue": "default", "expires": BERTH_SCRAPE_SECONDS},
    },
}

# Alert notifications. E-mail goes through Django's mail backend: without EMAIL_HOST, messages
# are written as files under var/mail (a local install shows them without a mail server); with
# EMAIL_HOST set they go out over SMTP. A webhook or e-mail that fails is retried with
# exponential backoff (2, 4, 8 … s) up to BERTH_WEBHOOK_RETRIES attempts, then marked failed.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "berth@localhost")
BERTH_WEBHOOK_RETRIES = env_int("BERTH_WEBHOOK_RETRIES", 5)
# Where people reach this dashboard (e.g. https://berth.example.com), to put whole links in
# notifications; without it they carry the path only.
BERTH_PUBLIC_URL = env_str("BERTH_PUBLIC_URL", "").rstrip("/")
