"""Fixtures of the fault-injection suite, and its scale switch.

The default run is sized for CI (the whole directory in a few minutes on 2 cores). The
large variants are marked ``soak`` (deselected by default) and run with any of::

    .venv/bin/python -m pytest tests/faults --faults-large
    REDRELAY_FAULTS_SCALE=large .venv/bin/python -m pytest tests/faults
    .venv/bin/python -m pytest tests/faults -m soak
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redrelay._server import RedisServer

from .history import History
from .workers import FaultWorker

#: Read at import: the autouse fixture of tests/conftest.py clears REDRELAY_* per test.
LARGE_BY_ENV = os.environ.get("REDRELAY_FAULTS_SCALE", "").lower() == "large"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-large",
        action="store_true",
        default=False,
        help="run the large (soak) variants of the fault-injection tests instead",
    )


def pytest_configure(config: pytest.Config) -> None:
    large = LARGE_BY_ENV or bool(config.getoption("--faults-large", default=False))
    if large:
        config.option.markexpr = "soak"


@pytest.fixture
def namespace() -> str:
    return f"faults-{secrets.token_hex(4)}"


@pytest.fixture
def history_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A redis-server for the history only: no fault ever touches it."""
    return redis_server_factory(appendonly=False)


@pytest.fixture
def history(history_server: RedisServer, namespace: str) -> Iterator[History]:
    h = History(history_server.url, namespace)
    yield h
    h.close()


@pytest.fixture
def spawn(
    history_server: RedisServer, namespace: str
) -> Iterator[Callable[..., FaultWorker]]:
    """``spawn(broker_url, *args, **env)``: a worker subprocess of ``app.py``; all are
    stopped at teardown."""
    started: list[FaultWorker] = []

    def start(broker_url: str, *args: str, **env: Any) -> FaultWorker:
        worker = FaultWorker(
            broker_url,
            history_server.url,
            namespace,
            *args,
            **{k: str(v) for k, v in env.items()},
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
