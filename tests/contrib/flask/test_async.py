"""Async handlers and apublish through the Flask extension: the app context is pushed
inside each coroutine (its own task), on the worker's one event loop thread."""

from __future__ import annotations

import asyncio
import threading

from flask import current_app

from redrelay import Message
from redrelay.contrib.flask import RedRelay

from ...processes import wait_for
from .conftest import MakeApp


def test_async_handlers_run_in_the_app_context(make_app: MakeApp) -> None:
    ext = RedRelay()
    seen: list[tuple[str, object]] = []
    jobs_done = threading.Event()

    @ext.consumer("jobs", concurrency=5)
    async def job(message: Message) -> None:
        await asyncio.sleep(0)
        seen.append((current_app.config["MARK"], message.body))
        if len(seen) == 3:
            jobs_done.set()

    news: list[tuple[str, object]] = []

    @ext.subscriber("news", concurrency=3)
    async def on_news(message: Message) -> None:
        await asyncio.sleep(0)
        news.append((current_app.config["MARK"], message.body))

    app = make_app(ext, REDRELAY_START_IN_PROCESS=True, MARK="web")
    app.add_url_rule("/", "index", lambda: "ok")
    assert app.test_client().get("/").status_code == 200  # starts the handlers

    async def produce() -> None:
        with app.app_context():
            for n in range(3):
                await ext.queue("jobs").aput(n)

    asyncio.run(produce())
    assert jobs_done.wait(10)
    assert sorted(seen) == [("web", 0), ("web", 1), ("web", 2)]

    def published() -> bool:
        async def publish() -> int:
            with app.app_context():
                return await ext.apublish("news", "flash")

        return asyncio.run(publish()) > 0 and bool(news)

    wait_for(published, what="the in-process async subscriber")
    assert news[0] == ("web", "flash")
