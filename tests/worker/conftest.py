from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redrelay import Relay
from redrelay.worker.runner import Runner

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


@pytest.fixture
def run() -> Iterator[Callable[..., Runner]]:
    """``run(relay, **options)``: a worker's Runner on threads of this process (queues
    only, a short poll), stopped at teardown."""
    runners: list[Runner] = []

    def start(relay: Relay, **kwargs: Any) -> Runner:
        runner = Runner(relay, subscribers=False, poll=0.05, **kwargs)
        runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.stop(grace=5)
