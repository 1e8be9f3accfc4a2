"""Taskiq with taskiq-redis's ``RedisStreamBroker`` (the one with acks): one worker process.

The stream broker reads with ``XREADGROUP`` (100 per call) and acks with ``XACK``; with
``--ack-type when_executed`` the ack follows the task, which makes it at-least-once.
There is no result backend. ``--max-async-tasks 200`` matches redrelay's prefetch.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from taskiq_redis import RedisStreamBroker

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisStreamBroker(URL, queue_name=QUEUE)


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    tick()


CONFIG = "taskiq worker --workers 1 --ack-type when_executed --max-async-tasks 200, RedisStreamBroker (XREADGROUP 100, XACK)"
WORKER = [
    str(Path(sys.executable).parent / "taskiq"), "worker", "bench.apps.taskiq_app:broker",
    "--workers", "1", "--ack-type", "when_executed", "--max-async-tasks", "200",
    "--log-level", "WARNING", "--no-configure-logging",
]  # fmt: skip


def produce(n: int, bulk: bool) -> float | None:
    """``await noop.kiq(i)`` one at a time; Taskiq has no bulk enqueue."""
    if bulk:
        return None

    async def run() -> float:
        await broker.startup()
        start = time.perf_counter()
        for i in range(n):
            await noop.kiq(i)
        elapsed = time.perf_counter() - start
        await broker.shutdown()
        return elapsed

    return asyncio.run(run())
