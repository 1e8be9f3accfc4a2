"""Helpers to run real worker subprocesses and read what their handlers did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[2]


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


class WorkerProcess:
    """``python -m redrelay worker tests.apps.worker_app:relay`` as a real subprocess."""

    #: The app the worker runs (subclasses run others).
    APP = "tests.apps.worker_app:relay"

    def __init__(self, url: str, namespace: str, *args: str, **env: str) -> None:
        full_env = dict(os.environ)
        full_env.update(
            {
                "REDRELAY_URL": url,
                "TEST_NAMESPACE": namespace,
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            }
        )
        full_env.update(env)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redrelay",
                "worker",
                self.APP,
                *args,
            ],
            cwd=ROOT,
            env=full_env,
            # a file, not a pipe: a pipe nobody reads would block a chatty worker
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything the worker printed (stops it first if it still runs)."""
        if self.proc.poll() is None:
            self.kill()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        """SIGTERM (a supervisor passes it on to its children), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def runs(url: str, namespace: str) -> list[tuple[str, int, str, int]]:
    """Every (id, pid, event, attempt) the test app's handlers recorded, in order."""
    with redis.Redis.from_url(url) as client:
        raw = client.lrange(f"{namespace}:test:runs", 0, -1)
    out = []
    for item in raw:
        msg_id, pid, event, attempt = item.decode().split()
        out.append((msg_id, int(pid), event, int(attempt)))
    return out


def done_counts(url: str, namespace: str) -> Counter[str]:
    return Counter(r[0] for r in runs(url, namespace) if r[2] == "done")
