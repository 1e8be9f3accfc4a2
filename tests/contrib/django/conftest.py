"""Django for these tests only, and per-test relays on the session's redis-server.

Importing this conftest (pytest does when it collects this directory) points
``DJANGO_SETTINGS_MODULE`` at ``tests.contrib.django.settings`` and sets Django up;
pytest-django then provides its fixtures (``settings``, ``client``, ``django_db``) to
these tests. The rest of the suite never imports Django.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest

# Before Django reads its settings: the SQLite test database is a file that worker
# subprocesses open too (they get the same path through the environment).
os.environ.setdefault(
    "RRDJ_TEST_DB",
    os.path.join(tempfile.gettempdir(), f"redrelay-django-{os.getpid()}.sqlite3"),
)
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.contrib.django.settings"
django.setup()

from django.db import connection  # noqa: E402

from redrelay import Relay  # noqa: E402
from redrelay._server import RedisServer  # noqa: E402
from redrelay.contrib.django import get_relay  # noqa: E402
from redrelay.contrib.django import relays as relays_module  # noqa: E402

from ...processes import Process, python_env  # noqa: E402
from .settings import FAST_OPTIONS  # noqa: E402


@pytest.fixture(autouse=True)
def namespace(
    settings: Any, make_relay: Callable[..., Relay], redrelay_url: str
) -> str:
    """Point REDRELAY at the session's redis-server, in a namespace of this test's own.

    The namespace's keys are deleted after the test (``make_relay``); changing the
    setting closes the previous relay (``setting_changed``).
    """
    ns = make_relay().namespace
    settings.REDRELAY = {
        "default": {
            "URL": redrelay_url,
            "NAMESPACE": ns,
            "OPTIONS": dict(FAST_OPTIONS),
            "OUTBOX_POLL": 0.05,
        }
    }
    return ns


@pytest.fixture
def app_relay(namespace: str) -> Relay:
    """The relay the Django app uses in this test (``get_relay()``)."""
    return get_relay()


@pytest.fixture
def declarations() -> Iterator[None]:
    """Forget the handlers a test declares with @consumer/@subscriber, after it."""
    saved = list(relays_module._declarations)
    yield
    relays_module._declarations[:] = saved


def runs(relay: Relay) -> list[tuple[str, str, int, str]]:
    """What the test app's handlers recorded: (queue or channel, id, pid, event)."""
    raw = relay.connection.call("LRANGE", f"{relay.namespace}:test:runs", 0, -1)
    out = []
    for item in raw:
        where, msg_id, pid, event = item.decode().split()
        out.append((where, msg_id, int(pid), event))
    return out


class DjangoWorker(Process):
    """``python -m django relay_worker`` as a real subprocess on this test's namespace."""

    def __init__(self, url: str, namespace: str, *args: str) -> None:
        env = python_env(
            {
                "DJANGO_SETTINGS_MODULE": "tests.contrib.django.settings",
                "RRDJ_URL": url,
                "RRDJ_NAMESPACE": namespace,
                # The test database in use (pytest-django suffixes it per xdist worker).
                "RRDJ_TEST_DB": str(connection.settings_dict["NAME"]),
            }
        )
        super().__init__(
            ["-m", "django", "relay_worker", *args],
            env,
            name="django-worker",
            graceful=False,
        )


@pytest.fixture
def start_worker(
    redrelay_url: str, namespace: str
) -> Iterator[Callable[..., DjangoWorker]]:
    """Start ``relay_worker`` subprocesses on this test's namespace; killed at teardown."""
    started: list[DjangoWorker] = []

    def start(*args: str) -> DjangoWorker:
        worker = DjangoWorker(redrelay_url, namespace, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def own_server(
    settings: Any,
    namespace: str,
    redis_server_factory: Callable[..., RedisServer],
) -> RedisServer:
    """REDRELAY on a redis-server of this test's own (AOF on), which it stops and starts."""
    server = redis_server_factory()
    settings.REDRELAY = {
        "default": {
            "URL": server.url,
            "NAMESPACE": namespace,
            "OUTBOX": True,
            "OPTIONS": {"connect_retries": 0, "lease": 2.0, "retries": 0},
        }
    }
    return server
