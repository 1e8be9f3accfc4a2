"""Take the dashboard screenshots of docs/ with headless Chromium.

    .venv/bin/python bench/dashboard_screenshot.py [--seconds 20]

Starts a redis-server of its own, runs real consumers (some messages fail and are
retried or dead-lettered) on three queues and a topic for ``--seconds`` (they keep
running while the pictures are taken), serves the
dashboard on a free loopback port, and saves docs/dashboard.png (the overview) and
docs/dashboard-queue.png (a queue page). Needs Debian's chromium and chromedriver.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from redrelay import Message, Relay, metrics  # noqa: E402
from redrelay._server import RedisServer  # noqa: E402
from redrelay.dashboard import Dashboard  # noqa: E402
from redrelay.dashboard.wsgi import serve  # noqa: E402


def traffic(relay: Relay, seconds: float) -> None:
    @relay.consumer("emails", concurrency=2)
    def send_email(message: Message) -> None:
        time.sleep(0.002)
        if message.body["to"].endswith("@invalid"):
            raise ValueError(f"no MX record for {message.body['to']}")

    @relay.consumer("thumbnails")
    def thumbnail(message: Message) -> None:
        time.sleep(0.01)
        if message.body["size"] > 9000:
            raise MemoryError("image too large")

    @relay.consumer("webhooks")
    def webhook(message: Message) -> None:
        if random.random() < 0.05:
            raise TimeoutError("POST https://hooks.example.com timed out")

    @relay.subscriber("orders", group="billing", start="beginning")
    def bill(message: Message) -> None:
        pass

    relay.start()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        relay.queue("emails").put_many(
            [
                {
                    "to": f"user{n}-{i}@{'invalid' if i == 0 and n % 5 == 0 else 'example.com'}"
                }
                for i in range(20)
            ]
        )
        relay.queue("thumbnails").put({"size": random.randint(100, 9300)})
        relay.queue("webhooks").put_many([{"event": "paid", "n": i} for i in range(10)])
        relay.topic("orders").publish({"order": n})
        time.sleep(0.1)
    relay.queue("webhooks").put(
        {"event": "<script>alert('not run')</script>"}, delay=600
    )
    relay.queue("thumbnails").put_many(
        [{"size": 500 + i} for i in range(3000)]
    )  # a backlog


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(tmp, appendonly=False) as server,
    ):
        relay = Relay(server.url, namespace="demo", retries=1, backoff=0.05)
        metrics.instrument(relay)
        traffic(relay, args.seconds)
        board = Dashboard(relay, anonymous=True)
        httpd = serve(board, "127.0.0.1", 0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_port}"
        driver = browser()
        try:
            driver.get(url + "/")
            WebDriverWait(driver, 15).until(
                lambda d: d.find_element("id", "live").text.startswith("live")
            )
            driver.save_screenshot(str(ROOT / "docs" / "dashboard.png"))
            driver.get(url + "/queues/emails")
            driver.save_screenshot(str(ROOT / "docs" / "dashboard-queue.png"))
        finally:
            driver.quit()
            relay.stop(grace=5)
            board.close()
            httpd.shutdown()
            relay.close()
    print("saved docs/dashboard.png and docs/dashboard-queue.png")


if __name__ == "__main__":
    main()
