"""redrelay: one subscriber group of the ``bench`` topic, no-op, default settings.

Run by ``python -m redrelay worker bench.apps.topic_app:relay`` (``bench/measure_limit.py``
publishes first, so the group starts from the beginning of the stream).
"""

from __future__ import annotations

import os

from redrelay import Message, Relay

from .._common import QUEUE, tick

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@relay.subscriber(QUEUE, group="bench", start="beginning")
def noop(message: Message) -> None:
    tick()
