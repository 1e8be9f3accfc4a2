"""Dramatiq with its RedisBroker: one worker process, one worker thread, prefetch 200.

Dramatiq acks each message after its actor ran (at-least-once); ``max_retries=0`` because
the handler never fails. Its default middleware stays on (it is what users run). One
thread and ``dramatiq_queue_prefetch=200`` is the fastest of the configurations tried
for a no-op actor (see docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .._common import QUEUE, tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(i: int) -> None:
    tick()


THREADS = os.environ.get("BENCH_DRAMATIQ_THREADS", "1")
CONFIG = f"dramatiq --processes 1 --threads {THREADS}, dramatiq_queue_prefetch=200, default middleware, max_retries=0"
WORKER = [
    str(Path(sys.executable).parent / "dramatiq"), "bench.apps.dramatiq_app",
    "--processes", "1", "--threads", THREADS, "--queues", QUEUE,
]  # fmt: skip
WORKER_ENV = {
    "dramatiq_queue_prefetch": os.environ.get("BENCH_DRAMATIQ_PREFETCH", "200")
}


def produce(n: int, bulk: bool) -> float | None:
    """``send()`` one message at a time; Dramatiq has no bulk enqueue."""
    if bulk:
        return None
    broker.client.ping()
    start = time.perf_counter()
    for i in range(n):
        noop.send(i)
    return time.perf_counter() - start
