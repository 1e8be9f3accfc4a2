"""Sample a worker with py-spy and summarise where its consumer thread spends its time.

py-spy runs with ``--idle``, so time a thread spends blocked on a socket read (waiting
for Redis) is counted too: the summary says how much of the consumer thread's time is
waiting for Redis and how much is Python work, and which functions hold it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Frames that mean "blocked reading a reply from Redis".
WAIT_FRAMES = ("read_from_socket", "recv_into", "_read_from_socket", "can_read")
#: The consumer thread's loop; stacks without it belong to other threads.
CONSUMER_FRAME = "Runner._consume"


@contextlib.contextmanager
def record(pyspy: str, pid: int, target: Path, fmt: str) -> Iterator[None]:
    """py-spy records ``pid`` (every thread, idle included) for the ``with`` block."""
    proc = subprocess.Popen(
        [
            pyspy, "record", "--pid", str(pid), "--rate", "250", "--idle",
            "--format", fmt, "--output", str(target),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.5)  # attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not target.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')}")


def _name(frame: str) -> str:
    """``Lease.fetch (redrelay/worker/leases.py:123)`` -> ``Lease.fetch (leases.py)``."""
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{func} ({file})" if file else func


def summarise(path: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive shares of the consumer thread's samples, by function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if CONSUMER_FRAME not in stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        if any(w in f for f in frames[-3:] for w in WAIT_FRAMES):
            waiting += n
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [
            [name, round(100 * c / total, 1)]
            for name, c in counter.most_common()
            if c < 0.99 * total
        ][:top]

    return {
        "samples": total,
        "waiting_for_redis_pct": round(100 * waiting / total, 1),
        "self": share(own),
        "inclusive": share(inclusive),
    }


if __name__ == "__main__":  # pragma: no cover - a helper: print a summary of a raw file
    import json
    import sys

    print(json.dumps(summarise(Path(sys.argv[1])), indent=1))
    os._exit(0)
