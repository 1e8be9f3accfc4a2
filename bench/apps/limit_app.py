"""redrelay at default settings for ``bench/limit.py`` (options only when asked for).

Environment: BENCH_REDIS_URL; BENCH_PREFETCH (unset: the default); BENCH_ASYNC=1 for an
``async def`` handler; BENCH_SLEEP (seconds each handler waits); BENCH_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from redrelay import Message, Relay

from .._common import QUEUE, tick

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
options: dict[str, Any] = {}
if os.environ.get("BENCH_PREFETCH"):
    options["prefetch"] = int(os.environ["BENCH_PREFETCH"])
if os.environ.get("BENCH_CONCURRENCY"):
    options["concurrency"] = int(os.environ["BENCH_CONCURRENCY"])
SLEEP = float(os.environ.get("BENCH_SLEEP", "0"))


def noop(message: Message) -> None:
    if SLEEP:
        time.sleep(SLEEP)
    tick()


async def anoop(message: Message) -> None:
    if SLEEP:
        await asyncio.sleep(SLEEP)
    tick()


relay.consumer(QUEUE, **options)(anoop if os.environ.get("BENCH_ASYNC") else noop)
