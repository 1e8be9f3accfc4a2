"""End-to-end browser tests: a real app in a real server, driven by headless Chromium.

Every test in ``tests/e2e/`` is marked ``e2e`` (by the hook below, so a new file needs
no marker of its own). They are part of the default run; ``-m 'not e2e'`` skips them.
They need Debian's ``chromium`` and ``chromedriver`` (``scripts/install`` installs
both); when either is missing the tests **fail**, saying so, rather than skip.

Fixtures for any framework's browser test:

- ``browser`` (function): a Selenium ``WebDriver`` for headless Chromium. One browser
  is shared by the session; each test gets it with cookies cleared on ``about:blank``.
  ``browser.wait(predicate_or_condition, timeout=10)`` is a bounded ``WebDriverWait``
  whose failure message includes the page's text and its console log.
- ``serve_wsgi`` (function): ``serve_wsgi(wsgi_app) -> "http://127.0.0.1:<port>"``
  runs any WSGI app (Flask, Django's ``get_wsgi_application()`` ...) in a threaded
  werkzeug server on a free port; stopped at teardown. Streaming responses (SSE) work:
  each open stream holds one server thread.

Example::

    def test_page(browser, serve_wsgi):
        url = serve_wsgi(create_app())
        browser.get(url + "/")
        browser.wait(lambda d: "live" in d.find_element(By.ID, "status").text)
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

#: Where Debian puts them (``apt-get install chromium chromium-driver``).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)
HERE = Path(__file__).resolve().parent
#: What a condition may raise while the page it reads is being replaced: a stale or
#: missing element, or Chromium's "Node with given id does not belong to the document"
#: (an unknown error, so any WebDriverException; a lasting one ends as the timeout's
#: AssertionError, with the page text and the console).
NOT_YET = (WebDriverException,)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


class Browser(webdriver.Chrome):
    """Chromium with a bounded wait that explains itself when it times out.

    A condition may look at the page while a form post or a link is replacing it: an element
    found on the old page and read after the swap is stale (or "does not belong to the
    document"), which means "not yet", not failure.
    """

    def wait(self, condition: Callable[[Any], Any], timeout: float = 10.0) -> Any:
        waiting = WebDriverWait(
            self, timeout, poll_frequency=0.05, ignored_exceptions=NOT_YET
        )
        try:
            return waiting.until(condition)
        except TimeoutException:
            try:
                text = self.find_element("tag name", "body").text
            except WebDriverException:
                text = "(no page)"
            raise AssertionError(
                f"browser: condition not met within {timeout} s on {self.current_url}\n"
                f"--- page text ---\n{text}\n--- console ---\n{self.console()}"
            ) from None

    def console(self) -> str:
        try:
            entries = self.get_log("browser")  # type: ignore[no-untyped-call]
        except WebDriverException:
            return "(unavailable)"
        return "\n".join(f"{e['level']}: {e['message']}" for e in entries) or "(empty)"


def _missing() -> list[str]:
    return [
        str(p)
        for p in (CHROMIUM, CHROMEDRIVER)
        if not p.exists() and shutil.which(p.name) is None
    ]


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Browser]:
    missing = _missing()
    if missing:
        pytest.fail(
            f"the browser tests need Chromium and chromedriver; missing: {', '.join(missing)}. "
            "Run scripts/install (as root it installs Debian's chromium and chromium-driver), "
            "or deselect these tests with -m 'not e2e'.",
            pytrace=False,
        )
    profile = tempfile.mkdtemp(prefix="redrelay-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(
        CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    )
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = (
        CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    )
    try:
        driver = Browser(
            service=Service(executable_path=str(driver_path)), options=options
        )
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(
            f"could not start headless Chromium ({exc.msg or exc}); "
            "check that chromium and chromedriver are the same version (scripts/install)",
            pytrace=False,
        )
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium: Browser) -> Iterator[Browser]:
    """The session's headless Chromium, on a blank page with no cookies."""
    _chromium.get("about:blank")
    _chromium.delete_all_cookies()
    yield _chromium
    # Leave the page, so its open connections (event streams) close now.
    _chromium.get("about:blank")


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[Any], str]]:
    """``serve_wsgi(app) -> base URL``: a threaded werkzeug server on 127.0.0.1."""
    servers: list[tuple[Any, threading.Thread]] = []

    def serve(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, name="e2e-wsgi-server", daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join(10)
        server.server_close()
