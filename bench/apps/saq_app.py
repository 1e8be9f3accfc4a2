"""SAQ on Redis: one worker process, ``concurrency=10`` (its default).

SAQ keeps each job in a hash with a status, and its sweeper retries jobs whose worker
died (at-least-once). Results are kept for SAQ's default ``ttl`` (600 s).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from saq import Queue

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

queue = Queue.from_url(URL, name=QUEUE)


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    tick()


settings = {"queue": queue, "functions": [noop], "concurrency": 10}

CONFIG = "saq --workers 1, concurrency=10 (default), default sweeps (at-least-once: sweeper retries stuck jobs)"
WORKER = [
    str(Path(sys.executable).parent / "saq"), "bench.apps.saq_app.settings",
    "--workers", "1", "--quiet",
]  # fmt: skip


def produce(n: int, bulk: bool) -> float | None:
    """``await queue.enqueue()`` one at a time; SAQ has no bulk enqueue."""
    if bulk:
        return None

    async def run() -> float:
        q = Queue.from_url(URL, name=QUEUE)
        await q.connect()
        start = time.perf_counter()
        for i in range(n):
            await q.enqueue("noop", i=i)
        elapsed = time.perf_counter() - start
        await q.disconnect()
        return elapsed

    return asyncio.run(run())
