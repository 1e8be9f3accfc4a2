"""Dashboard scale and observability cost, on a redis-server of its own (loopback socket).

    .venv/bin/python bench/dashboard.py                 # 1k vs 1M queued, 100 vs 100k dead
    .venv/bin/python bench/dashboard.py --small 1000 --large 1000000 --loads 20
    .venv/bin/python bench/dashboard.py --drain 20000   # drain rate with/without metrics+tracing

Page loads go through the dashboard core (routing, Redis reads, HTML rendering), the same
call every mount makes. Ready messages are real entries put with ``put_many``; dead
letters are records in the exact format ``bury.lua`` writes, written directly (100,000
failing deliveries through a worker would only make the setup slower).
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from redrelay import Message, Relay, metrics, tracing
from redrelay._server import RedisServer
from redrelay.dashboard import Dashboard, Request


def fill(relay: Relay, ready: int, dead: int) -> None:
    queue = relay.queue("work")
    for start in range(0, ready, 10_000):
        queue.put_many(
            [
                {"n": i, "pad": "x" * 40}
                for i in range(start, min(ready, start + 10_000))
            ]
        )
    k = queue.shard_keys()[0]
    conn = relay.connection
    errors = ("ValueError: bad input", "KeyError: 'user'", "TimeoutError: upstream")
    now_ms = conn.time_ms(k.dead)
    for start in range(0, dead, 5_000):
        zadd: list[Any] = []
        hset: list[Any] = []
        for i in range(start, min(dead, start + 5_000)):
            msg_id = f"dead{i:08d}"
            entry = queue.encode({"n": i}, msg_id=msg_id)
            record = orjson.dumps(
                {
                    "id": msg_id,
                    "queue": "work",
                    "reason": f"failed 1 times (retries=0); last error: {errors[i % 3]}",
                    "traceback": "Traceback (most recent call last):\n  ...\n"
                    + errors[i % 3],
                    "attempt": 1,
                    "dead_at": (now_ms - dead + i) / 1000,
                    "entry": base64.b64encode(entry).decode(),
                }
            )
            zadd += [now_ms - dead + i, msg_id]
            hset += [msg_id, record]
        conn.call("ZADD", k.dead, *zadd)
        conn.call("HSET", k.dead_data, *hset)


def load_times(boards: dict[str, Dashboard], path: str, loads: int) -> dict[str, float]:
    """Median milliseconds of ``loads`` GETs of ``path`` on each dashboard, interleaved
    (small, large, small, large ...) so that a load change on the machine hits both."""
    request = Request(method="GET", path=path, remote_addr="127.0.0.1")
    times: dict[str, list[float]] = {label: [] for label in boards}
    for i in range(loads + 1):
        for label, board in boards.items():
            t0 = time.perf_counter()
            response = board.handle(request)
            elapsed = time.perf_counter() - t0
            assert response.status == 200, response.body
            if i:  # the first round warms up
                times[label].append(elapsed * 1000)
    return {label: statistics.median(t) for label, t in times.items()}


def scale(url: str, small: int, large: int, loads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    boards = {}
    Relay(url).connection.call("FLUSHALL")
    for label, ready, dead in (
        ("small", small, small // 10),
        ("large", large, large // 10),
    ):
        relay = Relay(url, namespace=f"bench-{label}")
        fill(relay, ready, dead)
        stats = relay.queue("work").stats()
        assert (stats.ready, stats.dead) == (ready, dead), stats
        boards[label] = Dashboard(relay, anonymous=True)
        out[label] = {"ready": ready, "dead": dead}
    for page, path in (("overview_ms", "/"), ("queue_ms", "/queues/work")):
        for label, ms in load_times(boards, path, loads).items():
            out[label][page] = ms
        out[f"{page}_ratio"] = out["large"][page] / out["small"][page]
    for board in boards.values():
        board.close()
        board.relay.close()
    return out


#: What each drain mode turns on.
MODES = (
    "plain",
    "metrics",
    "metrics+otel-api",
    "metrics+otel-sdk-1%",
    "metrics+otel-sdk-all",
)


def drain_rate(url: str, n: int, mode: str, work: float = 0.0) -> float:
    """Messages per second drained in ``mode``: one consumer thread running a no-op
    handler, or with ``work`` > 0 four threads whose handler waits ``work`` seconds (an
    I/O-bound handler: a web call, a database write)."""
    relay = Relay(
        url, namespace="bench-drain", prefetch=100, concurrency=4 if work else 1
    )
    relay.connection.call("FLUSHALL")
    if mode != "plain":
        metrics.instrument(relay)
    if "otel-sdk" in mode:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        ratio = 0.01 if mode.endswith("1%") else 1.0
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        tracing.instrument(relay, tracer_provider=provider)
    elif "otel-api" in mode:
        tracing.instrument(relay)  # no SDK configured: the API's no-op spans

    @relay.consumer("drain")
    def handle(message: Message) -> None:
        if work:
            time.sleep(work)

    queue = relay.queue("drain")
    for start in range(0, n, 10_000):
        queue.put_many(list(range(start, min(n, start + 10_000))))
    t0 = time.perf_counter()
    relay.drain(timeout=600)
    rate = n / (time.perf_counter() - t0)
    relay.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument(
        "--drain", type=int, default=0, help="messages per drain run (0: skip)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="drain rounds (alternating)"
    )
    parser.add_argument(
        "--work-ms", type=float, default=0.0, help="handler time in ms (0: no-op)"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} ({platform.processor() or 'cpu'}), Python {platform.python_version()}"
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(tmp, appendonly=False) as server,
    ):
        if args.large:
            result["scale"] = scale(server.url, args.small, args.large, args.loads)
        if args.drain:
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(args.rounds):  # interleaved, so load drifts hit every mode
                for mode in MODES:
                    rates[mode].append(
                        drain_rate(server.url, args.drain, mode, args.work_ms / 1000)
                    )
            medians = {mode: statistics.median(r) for mode, r in rates.items()}
            result["drain"] = {
                "n": args.drain,
                "work_ms": args.work_ms,
                "msg_s": medians,
                "vs_plain": {m: medians[m] / medians["plain"] for m in MODES},
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
