"""The seed's raw redis-py patterns (main virtualenv, redis-py with hiredis).

    python bench/measure_raw.py main --url URL --n N --workdir DIR --out FILE

Bodies are ``json.dumps({"n": i})``, as the seed sends them. Rows:

- ``enqueue``: an ``LPUSH`` loop, one command per message (the seed's producer);
- ``drain_brpop``: a ``BRPOP`` loop on the ``n`` messages it pushed (the seed's consumer;
  no acks: a consumer that dies loses the message it popped);
- ``enqueue_pipeline``: batches of 1000 ``LPUSH`` commands, one pipeline round trip each;
- ``enqueue_lpush_many``: one ``LPUSH`` with 1000 values per round trip;
- ``drain_rpop_count``: ``RPOP key 200`` until empty (batched, no acks);
- ``drain_reliable``: ``BLMOVE`` into a processing list, then ``LREM`` (the reliable-queue
  pattern: two round trips per message);
- ``e2e``: an ``LPUSH`` loop and a ``BRPOP`` loop in two processes at once: ``n`` divided
  by the time from the first push to the last pop;
- ``publish`` and ``latency_*``: ``PUBLISH`` to one ``SUBSCRIBE``r in another process
  reading with ``pubsub.listen()``; latency from publish to the subscriber's loop, p50/p99,
  unthrottled and paced at 2,000 msg/s;
- ``memory_per_msg``: ``INFO memory`` growth per queued 100-byte value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench._common import (
    QUEUE,
    cpu_meter,
    mark_every,
    redis_pid,
    spawn,
    stop,
    tick,
    wait_marks,
    write_result,
)
from bench.pubsub import publish_phases, run_subscriber

BATCH = 1000
PROCESSING = QUEUE + ":processing"


def body(i: int) -> bytes:
    return json.dumps({"n": i}).encode()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fill(r: redis.Redis, n: int) -> None:
    for first in range(0, n, BATCH):
        r.lpush(QUEUE, *(body(i) for i in range(first, min(n, first + BATCH))))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    r = redis.Redis.from_url(args.url)
    n = args.n
    out: dict[str, Any] = {"system": "raw", "n": n}
    pids = {"worker": os.getpid(), "redis": redis_pid(r)}

    r.flushall()

    def lpush_loop() -> None:
        for i in range(n):
            r.lpush(QUEUE, body(i))

    out["enqueue"] = n / timed(lpush_loop)

    def brpop_loop() -> None:
        for _ in range(n):
            r.brpop([QUEUE], timeout=5)

    with cpu_meter(pids) as cpu:
        elapsed = timed(brpop_loop)
    out["drain_brpop"] = n / elapsed
    out["drain_brpop_cpu"] = {k: round(v / elapsed, 3) for k, v in cpu.items()}
    out["drain_brpop_cpu_window_s"] = round(elapsed, 3)

    r.flushall()

    def pipelined() -> None:
        for first in range(0, n, BATCH):
            pipe = r.pipeline(transaction=False)
            for i in range(first, min(n, first + BATCH)):
                pipe.lpush(QUEUE, body(i))
            pipe.execute()

    out["enqueue_pipeline"] = n / timed(pipelined)
    r.flushall()
    out["enqueue_lpush_many"] = n / timed(lambda: fill(r, n))

    def rpop_count() -> None:
        got = 0
        while got < n:
            got += len(r.rpop(QUEUE, 200) or ())

    out["drain_rpop_count"] = n / timed(rpop_count)

    fill(r, n)

    def reliable() -> None:
        for _ in range(n):
            value = r.blmove(QUEUE, PROCESSING, 5, "RIGHT", "LEFT")
            r.lrem(PROCESSING, 1, value)

    out["drain_reliable"] = n / timed(reliable)

    r.flushall()
    out["e2e"] = e2e(r, args)

    r.flushall()
    out.update(
        publish_phases(
            args,
            publish=lambda t: r.publish(QUEUE, json.dumps({"t": t})),
            end=lambda marker: r.publish(QUEUE, marker),
            subscribers=lambda: r.pubsub_numsub(QUEUE)[0][1],
            subscriber_argv=[sys.executable, __file__, "subscriber", "--url", args.url],
        )
    )

    r.flushall()
    before = int(r.info("memory")["used_memory"])
    value = b"x" * 100
    for first in range(0, n, BATCH):
        r.lpush(QUEUE, *[value] * min(BATCH, n - first))
    out["memory_per_msg"] = (int(r.info("memory")["used_memory"]) - before) / n
    r.flushall()
    return out


def e2e(r: redis.Redis, args: argparse.Namespace) -> float | None:
    """An LPUSH loop here while a BRPOP loop runs in another process."""
    n = args.n
    marks = args.workdir / "raw-e2e.marks"
    marks.unlink(missing_ok=True)
    consumer = spawn(
        [sys.executable, __file__, "consumer", "--url", args.url, "--n", str(n)],
        args.workdir / "raw-consumer.log",
        {"BENCH_MARKS": str(marks), "BENCH_MARK_EVERY": str(mark_every(n))},
    )
    try:
        deadline = time.monotonic() + 10
        while len(r.client_list(_type="normal")) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the BRPOP consumer did not connect")
            time.sleep(0.01)
        time.sleep(0.2)
        start = time.monotonic()
        for i in range(n):
            r.lpush(QUEUE, body(i))
        _, last, _, _ = wait_marks(marks, n, start + args.budget, consumer)
        return None if last is None else n / (last - start)
    finally:
        stop(consumer)


def consume(args: argparse.Namespace) -> None:
    """The e2e consumer: the seed's BRPOP loop with a no-op handler."""
    r = redis.Redis.from_url(args.url)
    r.ping()
    for _ in range(args.n):
        if r.brpop([QUEUE], timeout=30) is None:
            return
        tick()


def subscribe(args: argparse.Namespace) -> None:
    """The seed's subscriber: ``pubsub.listen()`` in a loop."""
    r = redis.Redis.from_url(args.url)
    p = r.pubsub(ignore_subscribe_messages=True)
    p.subscribe(QUEUE)

    def messages() -> Any:
        for message in p.listen():
            data = message["data"]
            now = time.monotonic_ns()
            yield data.decode() if data[:4] == b"END:" else now - json.loads(data)["t"]

    run_subscriber(messages())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["main", "consumer", "subscriber"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, default=Path("."))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.role == "consumer":
        consume(args)
    elif args.role == "subscriber":
        subscribe(args)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        write_result(args.out, measure(args))


if __name__ == "__main__":
    main()
