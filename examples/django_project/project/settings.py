"""Settings of the example project: SQLite, and Redis as the message broker.

Environment: ``REDRELAY_URL`` (default: the embedded development redis-server under
``./.redrelay``), ``REDRELAY_NAMESPACE`` (default ``example-django``), ``EXAMPLE_DB``
(the SQLite file, default ``db.sqlite3`` beside this project), ``EXAMPLE_DEBUG``.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-a-secret"
DEBUG = os.environ.get("EXAMPLE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

try:
    import django.tasks  # noqa: F401  (Django >= 6.0 has the tasks framework)

    TASKS_BACKPORT = []
except ImportError:
    TASKS_BACKPORT = ["django_tasks"]  # the django-tasks backport, on Django 5.x

INSTALLED_APPS = [
    *TASKS_BACKPORT,
    "redrelay.contrib.django",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Redis as the message broker. No URL: $REDRELAY_URL, else the embedded server.
REDRELAY = {
    "default": {
        "URL": os.environ.get("REDRELAY_URL") or None,
        "NAMESPACE": os.environ.get("REDRELAY_NAMESPACE") or "example-django",
        # Events are written to the outbox table in the same transaction as the data,
        # so a Redis outage when a view commits delays them instead of losing them.
        "OUTBOX": True,
    }
}

# django.tasks runs on the redrelay worker too.
TASKS = {
    "default": {
        "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
        "OPTIONS": {"RESULT_TTL": 3600},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "notifications": {"handlers": ["console"], "level": "INFO"},
        "redrelay": {"handlers": ["console"], "level": "WARNING"},
    },
}
