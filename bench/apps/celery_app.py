"""Celery on its Redis transport: ``acks_late=True``, solo pool, prefetch multiplier 200.

``acks_late`` is what makes Celery at-least-once (the message is acked after the task
ran); the solo pool runs tasks in the worker process itself (one process, no pool hop),
and a prefetch multiplier of 200 lets it hold as many unacked messages as redrelay's
prefetch. Results are ignored; gossip, mingle and heartbeats (cluster chatter) are off.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from celery import Celery

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=200,
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(i: int) -> None:
    tick()


CONFIG = "celery worker --pool solo --concurrency 1, acks_late=True, prefetch multiplier 200, results ignored, no gossip/mingle/heartbeat"
WORKER = [
    str(Path(sys.executable).parent / "celery"),
    "-A", "bench.apps.celery_app", "worker",
    "--pool", "solo", "--concurrency", "1", "--prefetch-multiplier", "200",
    "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
    "--loglevel", "WARNING",
]  # fmt: skip


def produce(n: int, bulk: bool) -> float | None:
    """Enqueue ``n`` jobs one ``delay()`` at a time; Celery has no bulk enqueue."""
    if bulk:
        return None
    start = time.perf_counter()
    for i in range(n):
        noop.delay(i)
    return time.perf_counter() - start
