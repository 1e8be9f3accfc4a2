"""The Flask example in a real browser: the page's form enqueues jobs, a real worker
process runs them, and the page shows their progress live over server-sent events."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from examples.flask_app.app import broker, create_app
from flask import Flask
from selenium.webdriver.common.by import By

from redrelay import Relay
from redrelay.contrib.sse import hub_for

from ..contrib.flask.helpers import WorkerProcess, example_env
from .conftest import Browser


@pytest.fixture
def namespace(make_relay: Callable[..., Relay]) -> str:
    """A fresh namespace whose keys are deleted at teardown."""
    return make_relay(namespace=f"test-{secrets.token_hex(6)}").namespace


@pytest.fixture
def app(redrelay_url: str, namespace: str) -> Iterator[Flask]:
    app = create_app(
        {
            "REDRELAY_URL": redrelay_url,
            "REDRELAY_NAMESPACE": namespace,
            "REDRELAY_SSE_KEEPALIVE": 1.0,
            "EXAMPLE_STEPS": 3,
            "EXAMPLE_STEP_SECONDS": 0.1,
        }
    )
    yield app
    relay = broker.relay_for(app)
    hub_for(relay).close()  # ends the page's open streams, so the server can stop
    relay.close()


@pytest.fixture
def worker(redrelay_url: str, namespace: str) -> Iterator[WorkerProcess]:
    process = WorkerProcess("flask", example_env(redrelay_url, namespace))
    process.wait_ready()
    yield process
    process.close()


def text(browser: Browser, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def test_form_jobs_progress_live_in_the_page(
    browser: Browser,
    serve_wsgi: Callable[[Any], str],
    app: Flask,
    worker: WorkerProcess,
) -> None:
    browser.get(serve_wsgi(app) + "/")
    # "live" once the progress stream is open: subscribed from then on.
    browser.wait(lambda d: text(d, "status") == "live")

    count = browser.find_element(By.ID, "count")
    count.clear()
    count.send_keys("3")
    browser.find_element(By.ID, "submit").click()

    browser.wait(lambda d: "all 3 jobs done" in text(d, "summary"), timeout=20)
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tr")
    assert len(rows) == 3
    for row in rows:
        assert row.find_element(By.CLASS_NAME, "state").text == "done"
        assert f"pid {worker.pid}" in row.find_element(By.CLASS_NAME, "attempt").text
        bar = row.find_element(By.TAG_NAME, "progress")
        assert bar.get_attribute("value") == bar.get_attribute("max") == "3"


def test_a_publish_from_the_server_appears_in_the_page(
    browser: Browser, serve_wsgi: Callable[[Any], str], app: Flask
) -> None:
    browser.get(serve_wsgi(app) + "/")
    browser.wait(lambda d: text(d, "status") == "live")
    hub = hub_for(broker.relay_for(app))
    # Both of the page's streams (progress, notifications) are registered.
    browser.wait(lambda d: hub.clients == 2)
    with app.app_context():
        assert broker.publish("notifications", {"text": "hello from the test"}) >= 1
    browser.wait(lambda d: "hello from the test" in text(d, "notifications"))

    # And the page's own notify form publishes to every open page.
    field = browser.find_element(By.ID, "notify-text")
    field.send_keys("typed in the page")
    browser.find_element(By.CSS_SELECTOR, "#notify-form button").click()
    browser.wait(lambda d: "typed in the page" in text(d, "notifications"))
