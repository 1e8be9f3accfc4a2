"""Async handlers against thread handlers, in one process on a private redis-server.

    .venv/bin/python bench/aio_handlers.py

Each row puts ``n`` messages and times ``relay.drain()`` (the worker's own code path).
The no-op rows show the per-message cost of handing a delivery to the event loop
thread; the sleep rows show what concurrency buys for handlers that wait on I/O.
Figures vary with the machine; they are not a test.
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

from redrelay import Message, Relay
from redrelay._server import RedisServer


async def anoop(message: Message) -> None:
    pass


def noop(message: Message) -> None:
    pass


async def asleep(message: Message) -> None:
    await asyncio.sleep(0.05)


def ssleep(message: Message) -> None:
    time.sleep(0.05)


def measure(
    url: str, label: str, handler: Callable[..., Any], n: int, **opts: Any
) -> None:
    relay = Relay(url, namespace=f"bench-aio-{abs(hash(label))}")
    relay.consumer("q", **opts)(handler)
    relay.queue("q").put_many(range(n))
    start = time.perf_counter()
    relay.drain(timeout=300)
    took = time.perf_counter() - start
    print(f"| {label} | {n} | {took:.2f} s | {n / took:,.0f}/s |")
    relay.close()


def main() -> None:
    server = RedisServer(pathlib.Path(tempfile.mkdtemp()), appendonly=False)
    server.start()
    try:
        print("| handlers | messages | time | rate |\n|---|---|---|---|")
        measure(server.url, "sync no-op, 1 thread", noop, 20000)
        measure(server.url, "async no-op, concurrency 50", anoop, 20000, concurrency=50)
        measure(
            server.url,
            "sync sleep 50 ms, 50 threads, prefetch 1",
            ssleep,
            1000,
            concurrency=50,
            prefetch=1,
        )
        measure(
            server.url,
            "async sleep 50 ms, concurrency 50",
            asleep,
            1000,
            concurrency=50,
        )
        measure(
            server.url,
            "async sleep 50 ms, concurrency 500",
            asleep,
            5000,
            concurrency=500,
            prefetch=500,
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
