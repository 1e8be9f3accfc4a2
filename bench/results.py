"""Costs of results (docs/results.md): drain rate with and without ``result_ttl=``, and
how fast 1,000 waiters wake, on how many connections.

    .venv/bin/python bench/results.py [--n 20000] [--rounds 3] [--waiters 1000]

Starts its own ``redis-server`` (no persistence) on a Unix socket in a temporary
directory. ``drain``: ``n`` messages queued, then one worker process (``python -m
redrelay worker``, prefetch 200, one thread, a handler returning ``{"n": i}``) drains
them; the rate counts from its first ack until all are acked (the ``acked`` counter,
polled every 10 ms, so the start-up of the process is left out), alternating the plain and the results variant for ``--rounds`` rounds
(median shown). ``waiters``: ``--waiters`` threads (then as many asyncio tasks) wait for
one message each; a worker is started once all are registered; each handler returns
``time.time()`` at its end, and the waiter's wake time minus it is the latency (which
includes the ack's batching, up to a batch of handlers). Connections are counted with
``CLIENT LIST`` before and while they wait. The Redis server's CPU per drained message
comes from ``INFO cpu`` before and after each drain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import redis  # noqa: E402

from redrelay import Relay  # noqa: E402
from redrelay._server import RedisServer  # noqa: E402
from redrelay.waiter import waiter_of  # noqa: E402

APP = """
import os, time
from redrelay import Relay
relay = Relay(os.environ["REDRELAY_URL"], namespace=os.environ["NS"], prefetch=200)
ttl = float(os.environ["TTL"]) or None
work_s = float(os.environ.get("WORK_US", "0")) / 1e6
@relay.consumer("bench", result_ttl=ttl)
def work(message):
    if work_s:  # CPU work, as a handler that does something
        end = time.perf_counter() + work_s
        while time.perf_counter() < end:
            pass
    return {"n": message.body["n"], "t": time.time()}
"""


def _worker(
    url: str, ns: str, ttl: float, appdir: str, work_us: float = 0.0
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, REDRELAY_URL=url, NS=ns, TTL=str(ttl), WORK_US=str(work_us))
    env["PYTHONPATH"] = os.pathsep.join([appdir, str(ROOT / "src")])
    return subprocess.Popen(
        [sys.executable, "-m", "redrelay", "worker", "bench_results_app:relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain(
    url: str, n: int, results: bool, appdir: str, rnd: int, work_us: float
) -> tuple[float, float]:
    ns = f"bench{rnd}{'r' if results else 'p'}{int(work_us)}"
    relay = Relay(url, namespace=ns)
    q = relay.queue("bench", results=results)
    for start in range(0, n, 1000):
        q.put_many([{"n": i} for i in range(start, min(n, start + 1000))])
    client = redis.Redis.from_url(url)
    cpu = _redis_cpu(client)
    began = time.monotonic()
    proc = _worker(url, ns, 3600.0 if results else 0.0, appdir, work_us)
    first: tuple[float, int] | None = None
    try:
        while True:
            acked = q.stats().counters.get("acked", 0)
            if first is None and acked:
                first = (time.monotonic(), acked)  # the worker is up: start the clock
            if acked >= n:
                break
            if time.monotonic() - began > 600:
                raise RuntimeError(f"drain did not finish: {acked} of {n}")
            time.sleep(0.01)
        assert first is not None
        elapsed = time.monotonic() - first[0]
        cpu = _redis_cpu(client) - cpu
    finally:
        proc.terminate()
        proc.wait(20)
        relay.close()
        client.close()
    return (n - first[1]) / elapsed, cpu * 1e6 / n


def waiters(url: str, count: int, style: str, appdir: str) -> dict[str, Any]:
    ns = f"waiters{style}"
    relay = Relay(url, namespace=ns)
    q = relay.queue("bench", results=True)
    ids = q.put_many([{"n": i} for i in range(count)])
    client = redis.Redis.from_url(url)
    before = len(client.client_list())
    lat: list[float] = []
    waiter = waiter_of(relay)
    during = 0
    if style == "threads":

        def wait(msg_id: str) -> None:
            value = q.result(msg_id, timeout=120)
            lat.append(time.time() - value["t"])

        threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        while waiter.pending() < count:
            time.sleep(0.01)
        during = len(client.client_list())
        proc = _worker(url, ns, 3600.0, appdir)
        for t in threads:
            t.join()
    else:

        async def main() -> int:
            async def one(msg_id: str) -> None:
                value = await q.aresult(msg_id, timeout=120)
                lat.append(time.time() - value["t"])

            tasks = [asyncio.ensure_future(one(i)) for i in ids]
            while waiter.pending() < count:
                await asyncio.sleep(0.01)
            seen = len(client.client_list())
            nonlocal proc
            proc = _worker(url, ns, 3600.0, appdir)
            await asyncio.gather(*tasks)
            return seen

        proc: subprocess.Popen[bytes] | None = None
        during = asyncio.run(main())
    assert proc is not None
    proc.terminate()
    proc.wait(20)
    relay.close()
    lat.sort()
    return {
        "style": style,
        "waiters": count,
        "extra_connections": during - before,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
        "max_ms": 1000 * lat[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--waiters", type=int, default=1000, help="0: skip")
    parser.add_argument(
        "--work-us",
        type=float,
        default=0.0,
        help="CPU microseconds each handler spends (0: a no-op handler)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_results_app.py").write_text(APP)
        with RedisServer(Path(tmp) / "redis", appendonly=False) as server:
            plain, tracked, cpu_p, cpu_r = [], [], [], []
            for rnd in range(args.rounds):
                rate, cpu = drain(server.url, args.n, False, tmp, rnd, args.work_us)
                plain.append(rate)
                cpu_p.append(cpu)
                rate, cpu = drain(server.url, args.n, True, tmp, rnd, args.work_us)
                tracked.append(rate)
                cpu_r.append(cpu)
            p, r = statistics.median(plain), statistics.median(tracked)
            print(
                f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
            )
            print(
                f"drain n={args.n} rounds={args.rounds} handler work {args.work_us:g} us: "
                f"plain {p:,.0f} msg/s, "
                f"result_ttl {r:,.0f} msg/s, ratio {r / p:.2f}"
            )
            print(
                f"  plain rounds {[round(x) for x in plain]}, results rounds {[round(x) for x in tracked]}"
            )
            print(
                f"  redis-server CPU per message (INFO cpu, whole run): plain "
                f"{statistics.median(cpu_p):.1f} us, result_ttl {statistics.median(cpu_r):.1f} us"
            )
            for style in ("threads", "asyncio") if args.waiters else ():
                row = waiters(server.url, args.waiters, style, tmp)
                print(
                    f"{row['waiters']} waiters ({style}): +{row['extra_connections']} connections "
                    f"while waiting; wake after the handler returned p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms"
                )


if __name__ == "__main__":
    main()
