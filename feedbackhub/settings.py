"""FeedbackHub settings: every deployment knob comes from the environment (see README, "Configuration")."""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from feedbackhub.env import env_bool, env_cache, env_int, env_list, env_mapping, env_rate, env_str, generated_secret

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FEEDBACKHUB_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY", "") or generated_secret(VAR_DIR / "secret_key")
DEBUG = env_bool("DEBUG", "false")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Behind a TLS-terminating proxy set FEEDBACKHUB_HTTPS=true: secure cookies, HSTS and redirects follow.
HTTPS = env_bool("FEEDBACKHUB_HTTPS", "false")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", "31536000" if HTTPS else "0", minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "django_celery_beat",
    "collector",
    "reviews",
    "loop",
]

MIDDLEWARE = [
    "feedbackhub.middleware.BodySizeLimitMiddleware",
    "feedbackhub.http_metrics.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before the middlewares of browser sessions, so that the single predictions answered next are counted by view.
    "feedbackhub.http_metrics.PrometheusAfterMiddleware",
    "loop.api.single_events.SinglePredictionMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "feedbackhub.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "feedbackhub.urls"
WSGI_APPLICATION = "feedbackhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_from_url(url: str) -> dict:
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {error}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # SQLite allows one writer at a time: IMMEDIATE takes the write lock when a transaction starts
        # (no upgrade deadlocks), WAL lets readers go on meanwhile, and the timeout queues writers.
        # Connections are kept (opening one costs more than a small write); see feedbackhub/sqlite/base.py.
        config["CONN_MAX_AGE"] = None
        # Past the busy timeout a write answers 503 (the lock is held elsewhere); gunicorn's timeout is longer.
        busy = env_int("FEEDBACKHUB_SQLITE_BUSY_SECONDS", "30", minimum=1)
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": busy,
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout={busy * 1000};",
        }
        # Tests use a file too (not Django's in-memory default), so they see the same locking as production.
        config["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
        config["ENGINE"] = "feedbackhub.sqlite"
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # Kept connections checked without a round trip while they are idle and sound: feedbackhub/postgresql/base.py.
        config["ENGINE"] = "feedbackhub.postgresql"
        # A database host that vanished without closing its connections (a crash, a cut network) is noticed by TCP
        # keepalives after about a minute of silence, not the system's two hours. Options in the URL come first.
        keepalives = {"keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
        # Values travel apart from the statement (server-side binding), so the statements every write repeats are parsed
        # once a connection (prepared after 5 uses), and a write can be a pipeline (collector.services). Behind a pooler
        # that cannot keep prepared statements, `?server_side_binding=false` gives Django's defaults. Each execution is
        # still planned for its own values (plan_cache_mode): a plan made once for all values cut PostgreSQL's batches
        # of 1,000 events to a third; the small pipelined writes of single predictions ask for one plan a statement
        # (collector.services._GENERIC_PLANS_UP_TO). A plan_cache_mode in the URL's `options` comes later, and wins
        # everywhere.
        prepared = {"server_side_binding": True, "prepare_threshold": 5}
        url_options = config.get("OPTIONS", {})
        config["PLAN_CACHE_MODE_IN_URL"] = "plan_cache_mode" in url_options.get("options", "")
        config["OPTIONS"] = {**keepalives, **prepared, **url_options}
        server_settings = ["-c plan_cache_mode=force_custom_plan", url_options.get("options", "")]
        config["OPTIONS"]["options"] = " ".join(setting for setting in server_settings if setting)
    # Neither backend has django-prometheus' query counters: they cost about 55 writes to its shared files in each
    # single-event request, a tenth of its time; query statistics belong to the database's own exporter.
    return config


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": _database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds the write throttle's counters, so it must be one that every web process sees: by default files
# under var/cache/ (the processes of one machine); with web processes on several machines, CACHE_URL=redis://...
CACHES = {"default": {**env_cache("CACHE_URL", VAR_DIR / "cache"), "KEY_PREFIX": "feedbackhub"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "feedbackhub.static_finders.PlotlyFinder",
]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "loop.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["loop.api.permissions.KeyForWritesKeyOrStaffForReads"],
    "DEFAULT_PARSER_CLASSES": ["loop.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["loop.api.throttling.WriteRateThrottle"],
    "EXCEPTION_HANDLER": "feedbackhub.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "FeedbackHub API",
    "DESCRIPTION": (
        "Collect predictions, late outcomes and human feedback for AI models. "
        "Send `Authorization: Bearer <key>` (create one with `manage.py create_api_key`). "
        'Every error has the shape `{"error": {"status", "code", "message", "fields": '
        '[{"field", "message"}]}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "loop.api.schema.document_errors"],
}

# Celery: the default broker is kombu's filesystem transport under var/, so `make run` needs no server.
# Point CELERY_BROKER_URL at Redis or RabbitMQ to run workers on other machines.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem:"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", "1800", minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = max(1, CELERY_TASK_TIME_LIMIT - 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks are published from inside HTTP requests (a retrain trigger after a write): with the broker down, a publish
# gives up after about a second (connect timeout, then two quick retries). The run stays queued, marked, and the
# beat's next retrain check sends it again; workers and beat keep retrying their own connections meanwhile.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
if CELERY_BROKER_URL.startswith(("redis:", "rediss:")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1.0}
CELERY_BEAT_SCHEDULER = "feedbackhub.beat:DatabaseScheduler"
# How often the beat looks for models due a retrain (threshold or schedule) and for runs whose worker died.
FEEDBACKHUB_RETRAIN_CHECK_SECONDS = env_int("FEEDBACKHUB_RETRAIN_CHECK_SECONDS", "60", minimum=1)
# Installed into the database scheduler when beat starts; edit times in the admin (Periodic tasks).
CELERY_BEAT_SCHEDULE = {
    "purge-expired-predictions": {
        "task": "collector.tasks.purge_expired_predictions",
        "schedule": crontab(minute=17, hour=3),
    },
    "retrain-due-models": {
        "task": "loop.tasks.retrain_due_models",
        "schedule": float(FEEDBACKHUB_RETRAIN_CHECK_SECONDS),
        # A check still waiting when the next one is sent is dropped: a busy worker then finds one, not a pile.
        "options": {"expire_seconds": FEEDBACKHUB_RETRAIN_CHECK_SECONDS},
    },
    "check-drift": {"task": "collector.tasks.check_drift", "schedule": 300.0, "options": {"expire_seconds": 300}},
}
CELERY_TIMEZONE = TIME_ZONE

# FeedbackHub's own knobs.
FEEDBACKHUB_DEFAULT_MODEL = env_str("FEEDBACKHUB_DEFAULT_MODEL", "default")
FEEDBACKHUB_AUTO_REGISTER = env_bool("FEEDBACKHUB_AUTO_REGISTER", "true")
FEEDBACKHUB_MAX_BATCH = env_int("FEEDBACKHUB_MAX_BATCH", "1000", minimum=1)
FEEDBACKHUB_MAX_BODY_BYTES = env_int("FEEDBACKHUB_MAX_BODY_BYTES", str(5 * 1024 * 1024), minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FEEDBACKHUB_MAX_BODY_BYTES
FEEDBACKHUB_WINDOW_OUTCOMES = env_int("FEEDBACKHUB_WINDOW_OUTCOMES", "1000", minimum=1)
FEEDBACKHUB_METRICS_TOKEN = env_str("FEEDBACKHUB_METRICS_TOKEN", "")
# Writes (POST and the like) per API key; over it a request gets a 429 with Retry-After. Reads are not limited.
# Generous by default: a guard against a runaway client, not a quota. `off` turns it off.
FEEDBACKHUB_WRITE_RATE = env_rate("FEEDBACKHUB_WRITE_RATE", "60000/min")
# Trainer plug-ins by name (see loop/trainers.py for the protocol); add your own with
# FEEDBACKHUB_TRAINERS="torch=mypackage.trainers.TorchTrainer,other=...".
FEEDBACKHUB_TRAINERS = {
    "sklearn": "loop.trainers.SklearnTrainer",
    **env_mapping("FEEDBACKHUB_TRAINERS", ""),
}
# A training run's worker records a heartbeat this often, even in the middle of a long fit; a run whose heartbeat
# is older than four intervals is taken for one whose worker died (killed, out of memory, machine lost).
FEEDBACKHUB_RUN_HEARTBEAT_SECONDS = env_int("FEEDBACKHUB_RUN_HEARTBEAT_SECONDS", "30", minimum=1)
FEEDBACKHUB_RUN_STALE_SECONDS = 4 * FEEDBACKHUB_RUN_HEARTBEAT_SECONDS
# BLAS threads of a training run's fit and predictions (0: the library's own default, one per core). One suits a
# worker per core (Celery's --concurrency about the cores): more threads oversubscribe the cores, and on the tall,
# narrow matrices of a feedback loop two OpenBLAS threads fitted the default model slower than one (README).
FEEDBACKHUB_TRAINING_BLAS_THREADS = env_int("FEEDBACKHUB_TRAINING_BLAS_THREADS", "1", minimum=0)
# Decoded numeric training rows kept under VAR_DIR/datasets/, so a retrain reads only the rows labelled since the last.
FEEDBACKHUB_DATASET_SNAPSHOTS = env_bool("FEEDBACKHUB_DATASET_SNAPSHOTS", "true")
# Functions (dotted paths) returning prediction or feedback ids the retention purge must keep.
FEEDBACKHUB_RETENTION_PROTECTORS = [
    "reviews.selectors.predictions_needed_by_open_tasks",
    "loop.selectors.predictions_in_champion_training_set",
]
FEEDBACKHUB_RETENTION_FEEDBACK_PROTECTORS = ["reviews.selectors.feedback_needed_by_open_tasks"]
