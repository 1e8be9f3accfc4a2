"""redrelay: one consumer of the ``bench`` queue, no-op, prefetch 200, one thread.

Run by ``python -m redrelay worker bench.apps.redrelay_app:relay`` (the real worker).
Acks are redrelay's own: at-least-once, batched per fetch (see ``worker/runner.py``).
"""

from __future__ import annotations

import os

from redrelay import Message, Relay

from .._common import QUEUE, tick

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@relay.consumer(
    QUEUE, prefetch=int(os.environ.get("BENCH_PREFETCH", "200")), concurrency=1
)
def noop(message: Message) -> None:
    tick()
