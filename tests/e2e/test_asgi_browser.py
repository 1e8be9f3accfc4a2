"""The ASGI example in headless Chromium: the page enqueues with ``await queue.aput``,
async jobs run in a real worker, and their progress arrives live over SSE."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from selenium.webdriver.common.by import By

from redrelay import Relay

from ..asgi_example import run_example
from .conftest import Browser


@pytest.fixture
def base(make_relay: Callable[..., Relay], redrelay_url: str) -> Iterator[str]:
    with run_example(redrelay_url, make_relay().namespace) as url:
        yield url


def test_jobs_progress_live_in_the_page(browser: Browser, base: str) -> None:
    browser.get(base + "/")
    # "live" once the progress stream is open: subscribed from then on.
    browser.wait(lambda d: d.find_element(By.ID, "status").text == "live")
    count = browser.find_element(By.ID, "count")
    count.clear()
    count.send_keys("3")
    browser.find_element(By.ID, "go").click()

    def all_done(driver: object) -> bool:
        bars = browser.find_elements(By.CSS_SELECTOR, "#jobs progress")
        return len(bars) == 3 and all(
            bar.get_attribute("value") == bar.get_attribute("max") == "5"
            for bar in bars
        )

    browser.wait(all_done, timeout=20)
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tr")
    assert sorted(row.find_element(By.TAG_NAME, "td").text for row in rows) == [
        "1 of 3",
        "2 of 3",
        "3 of 3",
    ]
