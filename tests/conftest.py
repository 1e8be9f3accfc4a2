"""Project-wide test configuration.

The real-server fixtures (``redrelay_server``, ``redrelay_url``, ``make_relay``,
``relay``) come from the ``redrelay.testing`` plugin, loaded through its ``pytest11``
entry point (``scripts/install`` installs the package in editable mode).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redrelay._server import RedisServer

from . import processes


@pytest.fixture(autouse=True)
def _clean_redrelay_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without the developer's ``REDRELAY_*`` environment variables."""
    for name in list(os.environ):
        if name.startswith("REDRELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start extra ``redis-server`` processes for tests that kill or restart Redis.

    ``redis_server_factory(**kwargs)`` passes ``kwargs`` to :class:`RedisServer` (AOF on
    by default, so a restart keeps the data), starts it in a fresh directory under
    ``tmp_path`` and returns it; every one is stopped at teardown, even a killed one.
    """
    count = 0
    with contextlib.ExitStack() as stack:

        def factory(**kwargs: Any) -> RedisServer:
            nonlocal count
            count += 1
            directory = kwargs.pop("directory", None) or tmp_path / f"redis-{count}"
            server = RedisServer(directory, **kwargs)
            stack.callback(server.stop)  # every one is stopped, even if another fails
            return server.start()

        yield factory


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """An environment for ``python -c`` subprocesses that can import redrelay.

    ``REDRELAY_*`` variables are already cleared, and ``src`` is put on ``PYTHONPATH``
    so the subprocess sees the code under test even without an editable install.
    """
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the random order's seed at the end of every run, ``-q`` included, so that
    a failure in one order can be replayed: ``scripts/test --randomly-seed=N``."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and not config.getoption(
        "randomly_dont_reorganize", False
    ):
        terminalreporter.write_line(
            f"random order seed {seed}: replay it with scripts/test --randomly-seed={seed}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report shows the logs of the processes it started (kept)."""
    report = yield
    if report.failed:
        report.sections.extend(processes.failed_test_logs())
    return report


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    processes.forget_finished()
