"""Run examples/asgi_app for tests: uvicorn and a worker as real subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from .processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0
#: Open event streams hold uvicorn's graceful shutdown: it cancels them after this.
GRACE = ("--timeout-graceful-shutdown", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def run_example(url: str, namespace: str) -> Iterator[str]:
    """The example under uvicorn on a free loopback port, and its worker; yields the
    base URL. Both must stop cleanly on SIGTERM (uvicorn re-raises it after its
    graceful shutdown; the worker exits 0)."""
    env = {
        **os.environ,
        "REDRELAY_URL": url,
        "ASGI_EXAMPLE_NAMESPACE": namespace,
        "ASGI_EXAMPLE_STEP_SECONDS": "0.01",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    }
    port = free_port()
    uvicorn = Path(sys.executable).parent / "uvicorn"
    web = subprocess.Popen(
        [str(uvicorn), "examples.asgi_app.app:app", "--port", str(port), *GRACE],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "redrelay", "worker", "examples.asgi_app.app:relay"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/stats", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=WAIT, interval=0.1, what="uvicorn serving the example")
        yield base
    finally:
        codes = []
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            try:
                codes.append(proc.wait(WAIT))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(WAIT))
    assert codes[0] in (0, -signal.SIGTERM) and codes[1] == 0, codes
