"""redrelay through its public API (main virtualenv).

    python bench/measure_redrelay.py main --url URL --n N --workdir DIR --out FILE
    python bench/measure_redrelay.py depth --url URL --workdir DIR --out FILE
    python bench/measure_redrelay.py scaling --url URL --n N --workdir DIR --out FILE

``main`` rows (bodies ``{"n": i}``):

- ``worker_idle_rss_mb``: a real worker (``python -m redrelay worker``) idle on an empty
  queue, one second after it joined;
- ``enqueue``: a ``queue.put`` loop; ``enqueue_bulk``: ``queue.put_many`` of 1000;
- ``drain``: one worker process (default settings, one thread, no-op) started on ``n`` queued
  messages: ``(n - 1) / (last - first)`` between the handler's first and ``n``-th call;
  afterwards the queue's ``acked`` counter is checked to be ``n`` (every message acked);
- ``e2e``: the same worker, idle, while this process sends ``n`` messages with
  ``put_many`` batches of 1000: ``n`` over first put to last handled;
- ``publish``, ``latency_*``: ``relay.publish`` to a ``Listener`` in another process (see
  ``bench/pubsub.py``);
- ``memory_per_msg``: ``INFO memory`` growth per queued message with a 100-byte body.

``depth`` drains 10,000 and 1,000,000 queued messages; ``scaling`` drains ``max(n,
200000)`` messages with 1, 2 and 4 worker processes; ``profile`` samples one worker with
py-spy while it drains ``max(20 n, 400000)`` messages (see ``bench/hotspots.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench._common import (
    QUEUE,
    cpu_meter,
    mark_every,
    read_marks,
    redis_pid,
    rss_mb,
    spawn,
    stop,
    wait_marks,
    write_result,
)
from bench.pubsub import Collector, publish_phases
from redrelay import Message, Relay
from redrelay.channel import Listener

BATCH = 1000


def worker_argv() -> list[str]:
    return [
        sys.executable, "-m", "redrelay", "worker", "bench.apps.redrelay_app:relay",
        "--queue", QUEUE, "--no-subscribers", "--grace", "5",
    ]  # fmt: skip


def start_worker(
    args: argparse.Namespace, name: str, every: int, extra: dict[str, str] | None = None
) -> tuple[Any, Path]:
    marks = args.workdir / f"{name}.marks"
    marks.unlink(missing_ok=True)
    env = {
        "BENCH_REDIS_URL": args.url,
        "BENCH_MARKS": str(marks),
        "BENCH_MARK_EVERY": str(every),
        **(extra or {}),
    }
    return spawn(worker_argv(), args.workdir / f"{name}.log", env), marks


def wait_joined(relay: Relay, count: int, proc: Any, timeout: float = 30.0) -> None:
    """Until ``count`` consumers hold a lease on the queue."""
    deadline = time.monotonic() + timeout
    while relay.queue(QUEUE).stats().consumers < count:
        if time.monotonic() > deadline or (
            proc is not None and proc.poll() is not None
        ):
            raise RuntimeError("the redrelay worker did not join the queue")
        time.sleep(0.01)


def acked(r: redis.Redis, relay: Relay) -> int:
    return int(r.hget(relay.queue(QUEUE).keys.stats, "acked") or 0)


def wait_acked(r: redis.Redis, relay: Relay, count: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (done := acked(r, relay)) < count and time.monotonic() < deadline:
        time.sleep(0.002)
    return done


def put_many(relay: Relay, n: int, body: Any = None) -> None:
    q = relay.queue(QUEUE)
    for first in range(0, n, BATCH):
        q.put_many(
            [
                {"n": i} if body is None else body
                for i in range(first, min(n, first + BATCH))
            ]
        )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n, r = args.n, redis.Redis.from_url(args.url)
    out: dict[str, Any] = {"system": "redrelay", "n": n}
    deadline = time.monotonic() + args.budget
    r.flushall()

    relay = Relay(args.url)
    proc, _ = start_worker(args, "redrelay-idle", 1)
    try:
        wait_joined(relay, 1, proc)
        time.sleep(1.0)
        out["worker_idle_rss_mb"] = round(rss_mb(proc.pid), 1)
    finally:
        stop(proc)
    relay.close()

    r.flushall()
    relay = Relay(args.url)
    q = relay.queue(QUEUE)
    start = time.perf_counter()
    for i in range(n):
        q.put({"n": i})
    out["enqueue"] = n / (time.perf_counter() - start)
    relay.close()

    r.flushall()
    relay = Relay(args.url)
    start = time.perf_counter()
    put_many(relay, n)
    out["enqueue_bulk"] = n / (time.perf_counter() - start)

    proc, marks = start_worker(args, "redrelay-drain", mark_every(n))
    try:
        first, _, _, _ = wait_marks(marks, 1, deadline, proc)
        if first is None:
            raise RuntimeError("the worker ran no message")
        with cpu_meter({"worker": proc.pid, "redis": redis_pid(r)}) as cpu:
            _, last, count, _ = wait_marks(marks, n, deadline, proc)
        if last is None:
            out["drain_error"] = f"timeout: {count} of {n} handled"
            return out
        out["drain"] = (n - 1) / (last - first)
        out["drain_cpu"] = {k: round(v / (last - first), 3) for k, v in cpu.items()}
        out["drain_cpu_window_s"] = round(last - first, 3)
        out["drain_acked"] = wait_acked(r, relay, n)
        time.sleep(1.0)
        out["worker_rss_mb"] = round(rss_mb(proc.pid), 1)

        start = time.monotonic()
        put_many(relay, n)
        _, last, count, _ = wait_marks(marks, 2 * n, deadline, proc)
        if last is None:
            out["e2e_error"] = f"timeout: {count - n} of {n} handled"
        else:
            out["e2e"] = n / (last - start)
            out["e2e_acked"] = wait_acked(r, relay, 2 * n) - n
    finally:
        stop(proc)
    relay.close()

    r.flushall()
    relay = Relay(args.url)
    channel = relay.channel(QUEUE)
    out.update(
        publish_phases(
            args,
            publish=lambda t: channel.publish({"t": t}),
            end=lambda marker: channel.publish(marker),
            subscribers=lambda: r.pubsub_numsub(channel.key)[0][1],
            subscriber_argv=[sys.executable, __file__, "subscriber", "--url", args.url],
        )
    )
    relay.close()

    r.flushall()
    relay = Relay(args.url)
    before = int(r.info("memory")["used_memory"])
    put_many(relay, n, body="x" * 100)
    out["memory_per_msg"] = (int(r.info("memory")["used_memory"]) - before) / n
    relay.close()
    r.flushall()
    return out


def subscribe(args: argparse.Namespace) -> None:
    """A ``Listener`` with one subscriber: what ``redrelay worker`` runs for channels."""
    relay = Relay(args.url)
    collector = Collector()
    done = threading.Event()

    @relay.subscriber(QUEUE)
    def on_event(message: Message) -> None:
        now = time.monotonic_ns()
        body = message.body
        collector.on(body if isinstance(body, str) else now - body["t"])
        if collector.done:
            done.set()

    listener = Listener(relay, relay.subscribers)
    listener.start()
    done.wait(600)
    listener.stop()


def drain_once(
    args: argparse.Namespace, r: redis.Redis, depth: int, processes: int
) -> dict[str, Any]:
    """Queue ``depth`` messages, start ``processes`` workers, time until all are acked."""
    r.flushall()
    relay = Relay(args.url)
    put_many(relay, depth)
    procs = []
    try:
        for k in range(processes):
            proc, marks = start_worker(
                args, f"redrelay-d{depth}-p{processes}-{k}", depth
            )
            procs.append((proc, marks))
        deadline = time.monotonic() + args.budget
        while not all(read_marks(m) for _, m in procs):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.002)
        first = min(read_marks(m)[0][1] for _, m in procs)
        pids = {"redis": redis_pid(r)} | {
            f"worker{k}": p.pid for k, (p, _) in enumerate(procs)
        }
        with cpu_meter(pids) as cpu:
            while acked(r, relay) < depth:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timeout: {acked(r, relay)} of {depth} acked")
                time.sleep(0.002)
            last = time.monotonic()
        window = last - first
        workers_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
        return {
            "rate": depth / window,
            "redis_cpu": round(cpu["redis"] / window, 3),
            "workers_cpu": round(workers_cpu / window, 3),
        }
    finally:
        for proc, _ in procs:
            stop(proc)
        relay.close()
        r.flushall()


def depth_check(args: argparse.Namespace) -> dict[str, Any]:
    r = redis.Redis.from_url(args.url)
    out: dict[str, Any] = {"system": "redrelay"}
    for depth in (10_000, 1_000_000):
        runs = [
            drain_once(args, r, depth, 1) for _ in range(3 if depth <= 100_000 else 1)
        ]
        runs.sort(key=lambda x: x["rate"])
        out[f"drain_depth_{depth}"] = runs[len(runs) // 2]
    r.flushall()
    relay = Relay(args.url)
    before = int(r.info("memory")["used_memory"])
    put_many(relay, 1_000_000, body="x" * 100)
    out["memory_per_msg_1m"] = (int(r.info("memory")["used_memory"]) - before) / 1e6
    relay.close()
    r.flushall()
    return out


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    r = redis.Redis.from_url(args.url)
    depth = max(args.n, 200_000)
    out: dict[str, Any] = {"system": "redrelay", "depth": depth}
    for processes in (1, 2, 4):
        out[f"drain_processes_{processes}"] = drain_once(args, r, depth, processes)
    return out


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Drain a big queue twice under py-spy: raw stacks (summarised), then an SVG."""
    from bench.hotspots import record, summarise

    r = redis.Redis.from_url(args.url)
    depth = max(20 * args.n, 400_000)
    out: dict[str, Any] = {"system": "redrelay", "depth": depth}
    for fmt in ("raw", "flamegraph"):
        r.flushall()
        relay = Relay(args.url)
        put_many(relay, depth)
        proc, marks = start_worker(args, f"redrelay-profile-{fmt}", depth)
        try:
            first, _, _, _ = wait_marks(marks, 1, time.monotonic() + 60, proc)
            target = args.profile_out.with_suffix(
                ".svg" if fmt == "flamegraph" else ".txt"
            )
            with record(args.pyspy, proc.pid, target, fmt):
                while acked(r, relay) < depth:
                    time.sleep(0.005)
            last = time.monotonic()
            out[f"rate_under_{fmt}"] = depth / (last - first) if first else None
        finally:
            stop(proc)
            relay.close()
        if fmt == "raw":
            out["summary"] = summarise(target)
    r.flushall()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role", choices=["main", "subscriber", "depth", "scaling", "profile"]
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, default=Path("."))
    parser.add_argument("--out")
    parser.add_argument("--pyspy", help="py-spy binary (profile)")
    parser.add_argument("--profile-out", type=Path, help="profile path stem (profile)")
    args = parser.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.url
    if args.role == "subscriber":
        subscribe(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    run = {
        "main": measure,
        "depth": depth_check,
        "scaling": scaling,
        "profile": profile,
    }[args.role]
    write_result(args.out, run(args))


if __name__ == "__main__":
    main()
