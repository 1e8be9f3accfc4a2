"""One home for the tests' real processes: workers, producers, Sentinels; and wait_for.

Every :class:`Process` writes its output to a log file under ``LOG_DIR``. When a test
fails, the report shows the end of the log of every process the test started, and the
files are kept (their paths are in the report); when it passes, they are deleted. The
hooks that do this are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redrelay

ROOT = Path(__file__).resolve().parents[1]
#: The redrelay the tests import: subprocesses run the very same code.
SRC = Path(redrelay.__file__).resolve().parents[1]
#: Where process logs go (kept there when their test fails).
LOG_DIR = Path(tempfile.gettempdir()) / "redrelay-test-logs"
#: Lines of a process's log shown in a failed test's report.
REPORT_LINES = 200


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate}"
            )
        time.sleep(interval)


def python_env(
    env: Mapping[str, str] | None = None, *, clear_redrelay: bool = False
) -> dict[str, str]:
    """This environment with the repository and ``src`` on ``PYTHONPATH``, plus ``env``.

    ``clear_redrelay`` drops inherited ``REDRELAY_*`` variables first.
    """
    full = {
        k: v
        for k, v in os.environ.items()
        if not (clear_redrelay and k.startswith("REDRELAY_"))
    }
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SRC)])
    full.update(env or {})
    return full


#: Processes of the running test whose logs are not settled yet (see tests/conftest.py).
_running_test: list[Process] = []


class Process:
    """A subprocess (``python -m ...`` by default) whose output goes to a log file.

    :param args: the command; a first argument ``-m`` runs it with this interpreter.
    :param env: the whole environment (see :func:`python_env`).
    :param name: a short label for the log file and the report.
    :param graceful: whether :meth:`close` asks with SIGTERM before SIGKILL.
    :param cwd: its working directory (the repository by default).
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        name: str = "process",
        graceful: bool = True,
        cwd: Path = ROOT,
    ) -> None:
        command = [sys.executable, *args] if args[0] == "-m" else list(args)
        LOG_DIR.mkdir(exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=LOG_DIR)
        self.log_path = Path(path)
        self.name = name
        self.graceful = graceful
        #: Keep the log file (its test failed).
        self.keep = False
        self.started_at = time.time()
        with os.fdopen(fd, "wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                # a file, not a pipe: a pipe nobody reads would block a chatty process
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _running_test.append(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What the process printed so far."""
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_output(self, text: str, timeout: float = 20.0) -> None:
        """Until ``text`` is in the output; fails at once if the process exits first."""
        wait_for(
            lambda: text in self.output() or self.proc.poll() is not None,
            timeout,
            what=f"{text!r} from {self.name}",
        )
        assert text in self.output(), f"{self.name} exited:\n{self.output()}"

    def close(self, timeout: float = 15.0) -> int | None:
        """Stop it: SIGCONT (it may be stopped) and SIGTERM, then SIGKILL after
        ``timeout`` seconds; SIGKILL at once if not ``graceful``. The exit status."""
        if self.proc.poll() is None:
            if self.graceful:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout)
            self.kill()
        return self.proc.returncode

    def report_section(self) -> tuple[str, str]:
        """(title, the end of the log) for a failed test's report."""
        lines = self.output().splitlines()[-REPORT_LINES:]
        title = f"log of {self.name} (pid {self.pid}), kept at {self.log_path}"
        return title, "\n".join(lines)


class Worker(Process):
    """``python -m redrelay worker TARGET ARGS`` on ``url`` (``REDRELAY_URL``)."""

    def __init__(
        self,
        target: str,
        url: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        name: str = "worker",
        graceful: bool = True,
    ) -> None:
        super().__init__(
            ["-m", "redrelay", "worker", target, *args],
            python_env({"REDRELAY_URL": url, **(env or {})}, clear_redrelay=True),
            name=name,
            graceful=graceful,
        )


class Sentinel(Process):
    """``redis-server sentinel.conf --sentinel`` on loopback ``port``, in ``directory``.

    ``config`` lines follow ``port``, ``bind`` and ``dir`` (e.g. ``sentinel monitor ...``);
    the log is the process's output.
    """

    def __init__(self, directory: Path, port: int, config: Sequence[str]) -> None:
        from redrelay._server import find_redis_server

        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {directory}", *config]
        conf.write_text("\n".join(lines) + "\n")
        self.port = port
        super().__init__(
            [find_redis_server(), str(conf), "--sentinel"],
            os.environ,
            name=f"sentinel-{port}",
            graceful=False,
        )


# -- used by the hooks of tests/conftest.py ------------------------------------------


def failed_test_logs() -> list[tuple[str, str]]:
    """The report sections of the failing test's processes; their logs are kept."""
    for process in _running_test:
        process.keep = True
    return [process.report_section() for process in _running_test]


def forget_finished() -> None:
    """After a test: delete the logs of exited processes whose tests passed."""
    for process in list(_running_test):
        if process.alive():
            continue  # a module fixture's process: its log is still being written
        _running_test.remove(process)
        if not process.keep:
            process.log_path.unlink(missing_ok=True)
