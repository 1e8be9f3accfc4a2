"""Throughput of a sharded queue on a local 3-node Redis Cluster: 1 vs 4 vs 8 shards.

    .venv/bin/python bench/cluster.py                 # N=20000, 2 worker processes, 1/4/8 shards
    .venv/bin/python bench/cluster.py --n 50000 --processes 4 --shards 1,2,4,8,16

Starts three ``redis-server --cluster-enabled yes`` on loopback (redrelay._cluster), and for
each shard count: fills a fresh queue (``put`` from one thread, then ``put_many`` in
batches), then drains it with worker processes running the real worker code (the Runner
of ``redrelay worker``: fetch, handler, ack) and a no-op handler, timed until every
message is acked. Prints messages per second.

Caveat: three nodes and the workers share one machine, so the nodes compete with the
workers for the same cores; this shows the overhead of sharding and that consumers spread
over shards, not the scaling of a cluster whose nodes have cores of their own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from redrelay import Message, Relay
from redrelay._cluster import LocalCluster
from redrelay.worker.runner import Runner

QUEUE = "bench"


def _consume(
    url: str, namespace: str, shards: int, go: Any, ready: Any, stop: Any
) -> None:
    relay = Relay(url, namespace=namespace, concurrency=4, prefetch=50)

    @relay.consumer(QUEUE, shards=shards)
    def noop(message: Message) -> None:
        pass

    relay.queue(
        QUEUE
    ).stats()  # connect and read the shard count before the clock starts
    ready.release()
    go.wait()
    runner = Runner(relay, subscribers=False)
    runner.start()
    stop.wait()
    runner.stop()
    relay.close()


def measure(url: str, shards: int, n: int, processes: int) -> dict[str, float]:
    namespace = f"bench{shards}x{os.getpid()}"
    relay = Relay(url, namespace=namespace)
    queue = relay.queue(QUEUE, shards=shards)
    singles = min(n // 4, 5000)
    started = time.perf_counter()
    for i in range(singles):
        queue.put(i)
    put_rate = singles / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(singles, n, 1000):
        queue.put_many(range(start, min(n, start + 1000)))
    put_many_rate = (n - singles) / (time.perf_counter() - started)
    nodes = {
        relay.connection.client.get_node_from_key(k.ready).name  # type: ignore[attr-defined]
        for k in queue.shard_keys()
    }
    ctx = multiprocessing.get_context("spawn")
    go, ready, stop = ctx.Event(), ctx.Semaphore(0), ctx.Event()
    workers = [
        ctx.Process(target=_consume, args=(url, namespace, shards, go, ready, stop))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    while queue.stats().counters.get("acked", 0) < n:  # the acks are the last step
        time.sleep(0.05)
    drain_rate = n / (time.perf_counter() - started)
    stop.set()
    for w in workers:
        w.join()
    stats = queue.stats()
    if stats.ready or stats.in_flight or stats.counters.get("acked", 0) != n:
        raise SystemExit(f"not drained exactly: {stats}")
    relay.close()
    return {
        "shards": shards,
        "nodes": len(nodes),
        "put": put_rate,
        "put_many": put_many_rate,
        "drain": drain_rate,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="messages per run")
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--shards", default="1,4,8", help="shard counts to compare")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(tmp, nodes=3) as cluster:
        print(
            f"3-node cluster on loopback, N={args.n}, {args.processes} worker processes x 4 threads, "
            f"{os.cpu_count()} CPUs"
        )
        print(
            f"{'shards':>6} {'nodes':>5} {'put/s':>9} {'put_many/s':>11} {'drain/s':>9}"
        )
        for shards in (int(s) for s in args.shards.split(",")):
            r = measure(cluster.url, shards, args.n, args.processes)
            print(
                f"{r['shards']:>6} {r['nodes']:>5} {r['put']:>9,.0f} "
                f"{r['put_many']:>11,.0f} {r['drain']:>9,.0f}"
            )


if __name__ == "__main__":
    main()
