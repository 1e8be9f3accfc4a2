"""Measure one peer (run with the peers' virtualenv): enqueue, drain, bulk enqueue, RSS.

    python bench/measure_peer.py PEER --url URL --n N --budget SECONDS --workdir DIR --out FILE

1. ``enqueue``: the peer's documented producer call, one job at a time, ``n`` jobs.
2. ``drain``: the peer's real worker (one process, the config in ``bench/apps/<peer>_app.py``)
   started on those ``n`` pre-filled jobs; the rate is ``(n - 1) / (last - first)`` where
   first and last are the times the no-op handler ran on the first and the ``n``-th job, so
   the worker's start-up is not counted. CPU seconds used by the worker and by
   redis-server over that window are recorded (what limits the drain).
3. ``worker_rss_mb``: the worker's process tree, idle after the drain.
4. ``enqueue_bulk``: the peer's bulk enqueue API, when it has one (batches of 1000).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench._common import (
    cpu_meter,
    mark_every,
    redis_pid,
    rss_mb,
    spawn,
    stop,
    wait_marks,
    write_result,
)


def drain(
    mod: Any,
    client: Any,
    n: int,
    deadline: float,
    workdir: Path,
    name: str,
    result: dict[str, Any],
) -> None:
    """Start the worker on ``n`` queued jobs; time the handler's first to ``n``-th call."""
    marks = workdir / f"{name}.marks"
    marks.unlink(missing_ok=True)
    env = {
        "BENCH_MARKS": str(marks),
        "BENCH_MARK_EVERY": str(mark_every(n)),
        **getattr(mod, "WORKER_ENV", {}),
    }
    proc = spawn(mod.WORKER, workdir / f"{name}.log", env)
    try:
        first, _, _, _ = wait_marks(marks, 1, deadline, proc)
        if first is None:
            result["drain_error"] = "timeout before the first job ran"
            return
        pids = {"worker": proc.pid, "redis": redis_pid(client)}
        with cpu_meter(pids) as cpu:
            _, last, count, at = wait_marks(marks, n, deadline, proc)
        if last is None:
            result["drain_error"] = f"timeout: {count} of {n} jobs ran"
            if at is not None and count > 1 and at > first:
                result["drain_partial"] = (count - 1) / (at - first)
            return
        window = last - first
        result["drain"] = (n - 1) / window if window > 0 else None
        result["drain_cpu"] = {k: round(v / window, 3) for k, v in cpu.items()}
        result["drain_cpu_window_s"] = round(window, 3)
        time.sleep(1.0)  # idle again
        result["worker_rss_mb"] = round(rss_mb(proc.pid), 1)
    except RuntimeError as exc:
        result["drain_error"] = str(exc)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    os.environ["BENCH_REDIS_URL"] = args.url
    args.workdir.mkdir(parents=True, exist_ok=True)
    mod = importlib.import_module(f"bench.apps.{args.peer}_app")
    client = redis.Redis.from_url(args.url)
    result: dict[str, Any] = {"system": args.peer, "config": mod.CONFIG, "n": args.n}
    try:
        client.flushall()
        elapsed = mod.produce(args.n, False)
        result["enqueue"] = args.n / elapsed
        drain(mod, client, args.n, deadline, args.workdir, args.peer, result)
        client.flushall()
        if time.monotonic() < deadline - 5:
            elapsed = mod.produce(args.n, True)
            if elapsed is not None:
                result["enqueue_bulk"] = args.n / elapsed
    finally:
        client.flushall()
        write_result(args.out, result)


if __name__ == "__main__":
    main()
