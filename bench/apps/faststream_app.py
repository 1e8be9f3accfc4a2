"""FastStream on a Redis list: one ``faststream run`` process, one subscriber.

A list subscriber takes each message with ``BLPOP`` and has no ack (acks exist only
for stream subscribers): at-most-once. Publishing is ``RPUSH``; ``publish_batch`` sends
a batch in one command.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from faststream import FastStream
from faststream.redis import RedisBroker

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisBroker(URL, log_level=30)
app = FastStream(broker)


@broker.subscriber(list=QUEUE)
async def noop(i: int) -> None:
    tick()


CONFIG = "faststream run --workers 1, @broker.subscriber(list=...) (BLPOP per message; no acks on lists: at-most-once); bulk: publish_batch of 1000"
WORKER = [
    str(Path(sys.executable).parent / "faststream"), "run",
    "bench.apps.faststream_app:app", "--workers", "1", "--log-level", "warning",
]  # fmt: skip

BULK_BATCH = 1000


def produce(n: int, bulk: bool) -> float | None:
    """``await broker.publish()`` one at a time, or ``publish_batch`` of 1000."""

    async def run() -> float:
        async with RedisBroker(URL) as producer:
            await producer.ping(timeout=5)
            start = time.perf_counter()
            if bulk:
                for first in range(0, n, BULK_BATCH):
                    await producer.publish_batch(
                        *range(first, min(n, first + BULK_BATCH)), list=QUEUE
                    )
            else:
                for i in range(n):
                    await producer.publish(i, list=QUEUE)
            return time.perf_counter() - start

    return asyncio.run(run())
