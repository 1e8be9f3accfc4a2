from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from redrelay import Relay

from .helpers import WorkerProcess


@pytest.fixture
def app_relay(make_relay: Callable[..., Relay]) -> Relay:
    """A producer-side relay in a fresh namespace, matching tests/apps/worker_app.py."""
    return make_relay()


@pytest.fixture
def start_worker(
    redrelay_url: str, app_relay: Relay
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker subprocesses on the app relay's namespace; all killed at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(redrelay_url, app_relay.namespace, *args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
