"""The dashboard in headless Chromium: live counts, a requeue, escaping, and auth."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from redrelay import Message, Relay
from redrelay.dashboard import Dashboard
from redrelay.dashboard.wsgi import wsgi_app

from ..worker.helpers import ROOT, wait_for
from .conftest import Browser


def cell(browser: Browser, queue: str, field: str) -> str:
    return str(
        browser.find_element(
            By.CSS_SELECTOR, f'[data-q="{queue}"][data-f="{field}"]'
        ).text
    )


@pytest.fixture
def cli_dashboard(
    redrelay_url: str, make_relay: Callable[..., Relay]
) -> Iterator[tuple[Relay, str]]:
    """``redrelay dashboard --port 0`` as a real subprocess; yields (relay, its URL)."""
    relay = make_relay()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "redrelay",
            "--url",
            redrelay_url,
            "--namespace",
            relay.namespace,
            "dashboard",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert found, line
        yield relay, found.group(1)
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_dashboard_overview_changes_live(
    browser: Browser, cli_dashboard: tuple[Relay, str]
) -> None:
    relay, url = cli_dashboard
    relay.queue("emails").put_many(["a", "b"])
    browser.get(url)
    assert browser.title == "Overview · redrelay"
    browser.wait(lambda d: cell(d, "emails", "ready") == "2")
    browser.wait(lambda d: d.find_element(By.ID, "live").text.startswith("live"))
    relay.queue("emails").put_many(
        ["c", "d", "e"]
    )  # no reload: the page updates itself
    browser.wait(lambda d: cell(d, "emails", "ready") == "5", timeout=15)
    relay.queue("emails").put("later", delay=60)
    browser.wait(lambda d: cell(d, "emails", "delayed") == "1", timeout=15)
    assert (
        browser.console() == "(empty)"
        or "Content Security Policy" not in browser.console()
    )


@pytest.fixture
def failing(make_relay: Callable[..., Relay]) -> Relay:
    relay = make_relay(retries=0)

    @relay.consumer("jobs")
    def handle(message: Message) -> None:
        raise ValueError(f"cannot handle {message.body!r}")

    return relay


def test_requeue_a_dead_letter_and_see_it_audited(
    browser: Browser, serve_wsgi: Callable[[Any], str], failing: Relay
) -> None:
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    failing.queue("jobs").put(evil)
    failing.drain(timeout=10, raise_on_failure=False)
    board = Dashboard(failing, anonymous=True, interval=0.5)
    try:
        url = serve_wsgi(wsgi_app(board))
        browser.get(url + "/queues/jobs")
        page = browser.find_element(By.TAG_NAME, "main").text
        assert evil in page  # shown as text, not run
        assert browser.execute_script("return window.pwned === undefined")
        assert "ValueError" in page
        row = browser.find_element(By.CSS_SELECTOR, "table.dead tbody tr")
        row.find_element(By.XPATH, ".//button[text()='Requeue']").click()
        browser.wait(lambda d: "requeued 1" in d.find_element(By.TAG_NAME, "main").text)
        wait_for(lambda: failing.queue("jobs").stats().ready == 1, timeout=5)
        assert failing.queue("jobs").stats().dead == 0
        browser.get(url + "/audit")
        rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert "anonymous@127.0.0.1" in rows[0].text and "requeue" in rows[0].text
    finally:
        board.close()


def test_refused_without_auth_off_loopback(
    browser: Browser, serve_wsgi: Callable[[Any], str], make_relay: Callable[..., Relay]
) -> None:
    """What ``redrelay dashboard --host <not loopback>`` builds: a token, no anonymous access."""
    relay = make_relay()
    relay.queue("jobs").put(1)
    token = secrets.token_urlsafe(24)
    board = Dashboard(relay, token=token, anonymous=False)
    try:
        url = serve_wsgi(wsgi_app(board))
        browser.get(url + "/")
        assert "Not allowed" in browser.find_element(By.TAG_NAME, "main").text
        assert not browser.find_elements(By.CSS_SELECTOR, "table.queues")
        browser.get(
            f"{url}/?token={token}"
        )  # sets the cookie, drops the token from the URL
        browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "table.queues"))
        assert "token" not in browser.current_url
        assert cell(browser, "jobs", "ready") == "1"
    finally:
        board.close()


def test_a_hidden_tab_closes_its_stream(
    browser: Browser, serve_wsgi: Callable[[Any], str], make_relay: Callable[..., Relay]
) -> None:
    """The page closes its EventSource when hidden (no snapshot is taken for it) and
    opens it again when shown."""
    relay = make_relay()
    relay.queue("jobs").put(1)
    board = Dashboard(relay, anonymous=True, interval=0.2)
    try:
        url = serve_wsgi(wsgi_app(board))
        browser.get(url + "/")
        browser.wait(lambda d: d.find_element(By.ID, "live").text.startswith("live"))
        wait_for(lambda: board.live._watchers == 1, what="one watcher")
        hide = (
            "Object.defineProperty(document, 'hidden', {value: %s, configurable: true});"
            "document.dispatchEvent(new Event('visibilitychange'));"
        )
        browser.execute_script(hide % "true")
        browser.wait(lambda d: d.find_element(By.ID, "live").text == "paused")
        # the server notices the closed stream at its next write (a snapshot every 0.2 s)
        wait_for(lambda: board.live._watchers == 0, timeout=10, what="no watcher")
        browser.execute_script(hide % "false")
        browser.wait(lambda d: d.find_element(By.ID, "live").text.startswith("live"))
        wait_for(lambda: board.live._watchers == 1, what="watching again")
    finally:
        board.close()
