"""Huey with RedisHuey: one consumer process, one worker thread.

Huey pops a message with ``BRPOP`` and runs it: there is no ack, so a message is lost if
the consumer dies while running it (at-most-once). Results of ``None`` are not stored.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from huey import RedisHuey

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

huey = RedisHuey(QUEUE, url=URL)


@huey.task()
def noop(i: int) -> None:
    tick()


CONFIG = "huey_consumer -w 1 -k thread (blocking BRPOP; no acks: at-most-once), no periodic tasks"
WORKER = [
    str(Path(sys.executable).parent / "huey_consumer"), "bench.apps.huey_app.huey",
    "--workers", "1", "--worker-type", "thread", "--no-periodic", "--quiet",
]  # fmt: skip


def produce(n: int, bulk: bool) -> float | None:
    """Call the task (which enqueues it) one at a time; Huey has no bulk enqueue."""
    if bulk:
        return None
    huey.storage.conn.ping()
    start = time.perf_counter()
    for i in range(n):
        noop(i)
    return time.perf_counter() - start
