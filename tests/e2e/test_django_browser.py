"""The Django example in a real browser: a notification posted from the page is saved,
published on commit, shown live over server-sent events and logged by the worker's
background subscriber; a django.tasks task runs on the worker and its result shows up.

The project runs as it would on a laptop: ``manage.py migrate``, ``manage.py
relay_worker`` and ``manage.py runserver`` as real processes, on the session's
redis-server in a namespace of this test's own.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from redrelay import Relay
from redrelay._server import free_port

from .. import processes
from ..processes import ROOT
from .conftest import Browser

PROJECT = ROOT / "examples" / "django_project"


class Process(processes.Process):
    """A ``manage.py`` command of the example project, its output in a file."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__(
            [sys.executable, "manage.py", *args], env, name=args[0], cwd=PROJECT
        )

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        self.wait_output(text, timeout)


@pytest.fixture
def project_env(
    redrelay_url: str, make_relay: Callable[..., Relay], tmp_path: Path
) -> dict[str, str]:
    """The example's environment: this session's Redis, a fresh namespace and database."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDRELAY_", "RRDJ_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "REDRELAY_URL": redrelay_url,
            "REDRELAY_NAMESPACE": make_relay(
                namespace=f"test-{secrets.token_hex(6)}"
            ).namespace,
            "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
            "PYTHONPATH": str(ROOT / "src"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env=env,
        check=True,
        timeout=60,
    )
    return env


@pytest.fixture
def worker(project_env: dict[str, str]) -> Iterator[Process]:
    process = Process(project_env, "relay_worker")
    process.wait_for_output("ready: queues [tasks.default], 1 subscribers")
    yield process
    assert process.stop() == 0  # SIGTERM: a graceful stop


@pytest.fixture
def site(project_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = Process(project_env, "runserver", f"127.0.0.1:{port}", "--noreload")
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"runserver did not start:\n{process.output()}"
                ) from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.stop()


def text(browser: Browser, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def test_notifications_reach_the_page_and_the_worker(
    browser: Browser, site: str, worker: Process
) -> None:
    browser.get(site + "/")
    # "live" once the event stream is open: subscribed from then on.
    browser.wait(lambda d: text(d, "status") == "live")

    note = f"deploy {secrets.token_hex(3)} finished"
    browser.find_element(By.ID, "text").send_keys(note)
    browser.find_element(By.ID, "send").click()
    browser.wait(lambda d: note in text(d, "notifications"))
    worker.wait_for_output(f"Received: {note}", timeout=10)

    browser.find_element(By.ID, "count").click()
    browser.wait(lambda d: text(d, "task-result") == "SUCCESSFUL: 1", timeout=15)

    browser.get(site + "/")  # saved: the page lists it from the database too
    browser.wait(lambda d: note in text(d, "notifications"))


def test_the_example_mounts_the_dashboard(
    browser: Browser, site: str, worker: Process
) -> None:
    browser.get(site + "/relay/")
    browser.wait(lambda d: text(d, "live").startswith("live"))
    cell = '[data-q="tasks.default"][data-f="consumers"]'
    browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, cell).text == "1")
    browser.get(site + "/relay/workers")
    assert "tasks.default" in browser.find_element(By.TAG_NAME, "main").text
