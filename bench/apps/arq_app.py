"""arq (its own virtualenv: it needs redis-py < 6): one worker, ``poll_delay=0.05``.

arq keeps a job "in progress" under a key with a timeout and retries it if the worker
dies, so it is at-least-once, like redrelay. The worker reads up to 100 job ids per poll
and sleeps ``poll_delay`` between polls: 0.05 s (default 0.5) was the fastest setting
tried; ``max_jobs`` stays 10 (200 and 50 were slower); ``keep_result=0`` stores no
results.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arq import create_pool
from arq.connections import RedisSettings

from .._common import tick

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_parts = urlsplit(URL)
REDIS = RedisSettings(host=_parts.hostname or "127.0.0.1", port=_parts.port or 6379)


async def noop(ctx: dict[str, Any], i: int) -> None:
    tick()


class WorkerSettings:
    functions = [noop]
    redis_settings = REDIS
    max_jobs = 10
    keep_result = 0
    poll_delay = 0.05


CONFIG = "arq worker, max_jobs=10 (default), poll_delay=0.05, keep_result=0 (at-least-once: in-progress keys, retried after a crash)"
WORKER = [str(Path(sys.executable).parent / "arq"), "bench.apps.arq_app.WorkerSettings"]


def produce(n: int, bulk: bool) -> float | None:
    """``await pool.enqueue_job()`` one at a time; arq has no bulk enqueue."""
    if bulk:
        return None

    async def run() -> float:
        pool = await create_pool(REDIS)
        await pool.ping()
        start = time.perf_counter()
        for i in range(n):
            await pool.enqueue_job("noop", i)
        elapsed = time.perf_counter() - start
        await pool.aclose()
        return elapsed

    return asyncio.run(run())
