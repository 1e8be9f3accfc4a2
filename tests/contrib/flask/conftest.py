"""Fixtures for the Flask extension tests: apps on the session's real redis-server."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from redrelay import Relay
from redrelay.contrib.flask import RedRelay
from redrelay.contrib.sse import hub_for

from .helpers import WorkerProcess

MakeApp = Callable[..., Flask]


@pytest.fixture
def namespace(make_relay: Callable[..., Relay]) -> str:
    """A fresh namespace whose keys are deleted at teardown (by ``make_relay``)."""
    return make_relay(namespace=f"test-{secrets.token_hex(6)}").namespace


@pytest.fixture
def close_apps() -> Iterator[Callable[[Flask], Flask]]:
    """``close_apps(app)``: at teardown, close the app's event hub and relay."""
    apps: list[Flask] = []

    def add(app: Flask) -> Flask:
        apps.append(app)
        return app

    yield add
    for app in apps:
        state = app.extensions.get("redrelay")
        if state is not None:
            hub_for(state.relay).close()
            state.relay.close()


@pytest.fixture
def make_app(
    redrelay_url: str, namespace: str, close_apps: Callable[[Flask], Flask]
) -> MakeApp:
    """``make_app(ext=None, **config)``: a Flask app initialised with ``ext`` (default:
    a new ``RedRelay()``) on the session server, in the test's namespace."""

    def factory(ext: RedRelay | None = None, **config: Any) -> Flask:
        app = Flask("testapp")
        app.config.update(
            TESTING=True,
            REDRELAY_URL=redrelay_url,
            REDRELAY_NAMESPACE=namespace,
            REDRELAY_SSE_KEEPALIVE=0.2,
        )
        app.config.update(config)
        (ext or RedRelay()).init_app(app)
        return close_apps(app)

    return factory


@pytest.fixture
def example_app(
    redrelay_url: str, namespace: str, close_apps: Callable[[Flask], Flask]
) -> Flask:
    """The example app (examples/flask_app) on the session server, in the test's namespace."""
    from examples.flask_app.app import create_app

    app = create_app(
        {
            "TESTING": True,
            "REDRELAY_URL": redrelay_url,
            "REDRELAY_NAMESPACE": namespace,
            "REDRELAY_SSE_KEEPALIVE": 0.2,
        }
    )
    return close_apps(app)


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(command, env, *args)``: a real worker subprocess, stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(command: str, env: dict[str, str], *args: str) -> WorkerProcess:
        worker = WorkerProcess(command, env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
