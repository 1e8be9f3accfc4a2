"""Async handlers against plain ones, worker processes in one run on one redis-server.

    .venv/bin/python bench/aio_handlers.py                  # n=100,000, 5 rounds
    .venv/bin/python bench/aio_handlers.py --n 50000 --rounds 3

Rows run alternately within each round (the medians of the rounds are reported), each
a ``redrelay worker`` process started on a full queue, timed as in ``bench/limit.py``
(the handler's first to ``n``-th call; the same app, ``bench/apps/limit_app.py``):

- ``sync``: a plain ``def`` no-op at default settings;
- ``async``: an ``async def`` no-op at default settings (target: >= 0.8x ``sync``);
- ``async sleep``: 500 coroutines each awaiting ``asyncio.sleep(0.05)``
  (``concurrency=500``; ideal 10,000 msg/s, target >= 90% of it);
- ``asyncio alone``: the same 500 x 50 ms sleeps in a bare asyncio program, no Redis
  and no redrelay (a task started as each one ends): what the event loop itself reaches
  on this machine now, the ceiling of the row above.

On a shared machine compare the ratios of one run, not the absolute figures; the load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.limit import WORKER, drain, fill
from redrelay._server import RedisServer

SLEEP, CONCURRENCY, IDEAL = 0.05, 500, 10_000


def rows(n: int) -> list[tuple[str, int, dict[str, str]]]:
    sleep = {"BENCH_ASYNC": "1", "BENCH_SLEEP": str(SLEEP),
             "BENCH_CONCURRENCY": str(CONCURRENCY)}  # fmt: skip
    return [
        ("sync", n, {}),
        ("async", n, {"BENCH_ASYNC": "1"}),
        ("async sleep", min(n, 20_000), sleep),
    ]


async def _alone(n: int) -> float:
    """500 tasks of one 50 ms sleep at a time, a new one started as each ends."""
    loop = asyncio.get_running_loop()
    left, ended, done = n, 0, asyncio.Event()

    async def handler() -> None:
        await asyncio.sleep(SLEEP)

    def start() -> None:
        nonlocal left
        left -= 1
        loop.create_task(handler()).add_done_callback(finished)

    def finished(_: object) -> None:
        nonlocal ended
        ended += 1
        if left > 0:
            start()
        elif ended == n:
            done.set()

    began = time.perf_counter()
    for _ in range(CONCURRENCY):
        start()
    await done.wait()
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="redrelay-aio-"))
    server = RedisServer(workdir / "redis", unix_socket=False, appendonly=False)
    server.start()
    client = redis.Redis.from_url(server.url)
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            for label, n, env in rows(args.n):
                client.flushall()
                fill(server.url, n)
                got = drain(server.url, workdir, f"r{r}-{label}", WORKER, env, n)
                rate = got[0] if got is not None else None  # (msg/s, CPU µs, redis µs)
                if rate is not None:
                    results.setdefault(label, []).append(rate)
                print(f"  round {r + 1}: {label}: {rate or 0:,.0f}", file=sys.stderr)
            rate = asyncio.run(_alone(min(args.n, 20_000)))
            results.setdefault("asyncio alone", []).append(rate)
            print(f"  round {r + 1}: asyncio alone: {rate:,.0f}", file=sys.stderr)
    finally:
        server.stop()
    load_after = os.getloadavg()
    med = {label: statistics.median(v) for label, v in results.items()}
    print(
        f"n = {args.n:,}, median of {args.rounds} rounds, {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()} with {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after\n"
    )
    print("| row | msg/s | ratio |\n|---|--:|--:|")
    sync = med.get("sync")
    for label, rate in med.items():
        if label == "sync":
            ratio = "1.00x"
        elif label in ("async sleep", "asyncio alone"):
            ratio = f"{rate / IDEAL:.0%} of {IDEAL:,}"
        else:
            ratio = f"{rate / sync:.2f}x sync" if sync else "-"
        print(f"| {label} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
