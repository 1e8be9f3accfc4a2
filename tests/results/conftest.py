from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from redrelay import Relay

from ..processes import Worker


class ResultsWorker(Worker):
    """``python -m redrelay worker tests.apps.results_app:relay`` as a real subprocess."""

    def __init__(self, url: str, namespace: str, *args: str, **env: str) -> None:
        super().__init__(
            "tests.apps.results_app:relay",
            url,
            *args,
            env={"TEST_NAMESPACE": namespace, **env},
            name="results-worker",
        )


@pytest.fixture
def app(make_relay: Callable[..., Relay]) -> Relay:
    """The producer side: tests/apps/results_app.py's relay, in a fresh namespace."""
    import tests.apps.results_app as module

    relay = make_relay()
    # The same declarations as the worker's (a web app imports its consumers too).
    relay.queue("calc", results=True)
    relay.queue("acalc", results=True)
    relay.task(queue="tasks.mul", result_ttl=60)(module.mul.fn)
    return relay


@pytest.fixture
def start_worker(redrelay_url: str, app: Relay) -> Iterator[Callable[..., Worker]]:
    """Start real worker subprocesses of the results app; all stopped at teardown."""
    started: list[Worker] = []

    def start(*args: str, **env: str) -> Worker:
        worker = ResultsWorker(redrelay_url, app.namespace, *args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
