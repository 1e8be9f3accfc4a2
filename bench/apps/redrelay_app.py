"""redrelay: one consumer of the ``bench`` queue, no-op, one thread, default settings.

``BENCH_PREFETCH`` fixes the batch size (a tuned run); unset, it adapts (the default).

Run by ``python -m redrelay worker bench.apps.redrelay_app:relay`` (the real worker).
Acks are redrelay's own: at-least-once, batched per fetch (see ``worker/runner.py``).
"""

from __future__ import annotations

import os

from redrelay import Message, Relay

from .._common import QUEUE, tick

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


_tuned = (
    {"prefetch": int(os.environ["BENCH_PREFETCH"])}
    if os.environ.get("BENCH_PREFETCH")
    else {}
)


@relay.consumer(QUEUE, concurrency=1, **_tuned)
def noop(message: Message) -> None:
    tick()
