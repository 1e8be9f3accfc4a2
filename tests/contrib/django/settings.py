"""Django settings for the tests of redrelay.contrib.django (and their worker subprocesses).

Environment (read once, at import): ``RRDJ_URL`` and ``RRDJ_NAMESPACE`` (the relay of a
worker subprocess; in-process tests set ``REDRELAY`` per test instead), ``RRDJ_IN_PROCESS``
(``START_IN_PROCESS`` of a ``runserver`` subprocess), ``RRDJ_TEST_DB``
(the SQLite file shared with those subprocesses).
"""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "redrelay-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

try:
    import django.tasks  # noqa: F401  (Django >= 6.0)

    TASKS_APP: list[str] = []
except ImportError:
    TASKS_APP = ["django_tasks"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    *TASKS_APP,
    "redrelay.contrib.django",
    "tests.contrib.django.testapp",
]

_DB = os.environ.get("RRDJ_TEST_DB") or os.path.join(
    tempfile.gettempdir(), f"redrelay-django-{os.getpid()}.sqlite3"
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _DB,
        # A file, not memory: worker subprocesses read the same test database.
        "TEST": {"NAME": _DB},
    }
}
ROOT_URLCONF = "tests.contrib.django.urls"
# What the admin needs (the outbox is in it); the other views need none.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

#: Quick leases and retries, so that crash and retry paths take little time in tests;
#: one message per fetch, so that several worker processes share a small batch.
FAST_OPTIONS = {
    "lease": 2.0,
    "heartbeat": 0.4,
    "retries": 1,
    "backoff": 0.01,
    "prefetch": 1,
}

REDRELAY = {
    "default": {
        "URL": os.environ.get("RRDJ_URL") or None,
        "NAMESPACE": os.environ.get("RRDJ_NAMESPACE") or "rrdj",
        "OPTIONS": FAST_OPTIONS,
        "OUTBOX_POLL": 0.05,
        # RRDJ_IN_PROCESS=1: consumers in the serving process (tests of runserver).
        "START_IN_PROCESS": os.environ.get("RRDJ_IN_PROCESS") == "1",
    }
}

TASKS = {
    "default": {
        "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
        "QUEUES": ["default", "other"],
        "OPTIONS": {"RESULT_TTL": 600, "CONSUMER": {"lease": 2.0, "heartbeat": 0.4}},
    }
}

LOGGING_CONFIG = None
