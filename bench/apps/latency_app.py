"""redrelay: a consumer at default settings that records how late each handler starts.

Each body is ``{"t": time.monotonic_ns() at put}``; the handler keeps ``now - t``. The
body ``"END"`` writes the latencies (ns, one per line) to ``$BENCH_LATENCY_OUT``. Run by
``python -m redrelay worker bench.apps.latency_app:relay --queue bench-latency`` (or the
queue named by ``$BENCH_LATENCY_QUEUE``: a baseline tree's worker beside it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from redrelay import Message, Relay

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
QUEUE = os.environ.get("BENCH_LATENCY_QUEUE", "bench-latency")
_latencies: list[int] = []


@relay.consumer(QUEUE)
def record(message: Message) -> None:
    now = time.monotonic_ns()
    body = message.body
    if body == "END":
        out = os.environ["BENCH_LATENCY_OUT"]
        tmp = Path(out + ".tmp")  # then renamed: the driver never reads half a file
        tmp.write_text("".join(f"{x}\n" for x in _latencies))
        tmp.rename(out)
        _latencies.clear()
    else:
        _latencies.append(now - body["t"])
