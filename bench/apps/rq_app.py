"""RQ with ``SimpleWorker`` (runs jobs in the worker process, no fork per job).

RQ's default ``Worker`` forks a child per job, which caps it at a few hundred jobs per
second; ``SimpleWorker`` is RQ's documented way to run in one process. Results keep RQ's
default TTL (500 s): ``result_ttl=0`` makes RQ delete each job at once, which was slower.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Queue

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def noop(i: int) -> None:
    tick()


CONFIG = "rq worker -w rq.SimpleWorker (one process, no fork per job), default result_ttl; bulk: Queue.enqueue_many (one pipeline)"
WORKER = [
    str(Path(sys.executable).parent / "rq"), "worker",
    "--url", URL, "--worker-class", "rq.SimpleWorker",
    "--logging_level", "WARNING", "--disable-job-desc-logging", QUEUE,
]  # fmt: skip

BULK_BATCH = 1000


def produce(n: int, bulk: bool) -> float | None:
    """``enqueue`` one job at a time, or ``enqueue_many`` batches of 1000 (one pipeline each)."""
    q = Queue(QUEUE, connection=Redis.from_url(URL))
    q.connection.ping()
    start = time.perf_counter()
    if bulk:
        for first in range(0, n, BULK_BATCH):
            q.enqueue_many(
                [
                    Queue.prepare_data(noop, (i,))
                    for i in range(first, min(n, first + BULK_BATCH))
                ]
            )
    else:
        for i in range(n):
            q.enqueue(noop, i)
    return time.perf_counter() - start
