"""redrelay against its baselines, each pair interleaved in time (the harness's ``limit``).

    python bench/measure_limit.py main --url URL --n N --workdir DIR --out FILE

On a shared machine the load changes from second to second, so two figures measured one
after the other say little about their ratio. Here the two sides of each comparison run
in alternating slices of a fraction of a second (or alternating drains), so that both
meet the same load; the driver reports both figures and their ratio. Every redrelay row
runs at default settings unless its key says ``tuned``.

- ``put`` / ``put_seed``: ``queue.put({"n": i})`` against the seed's ``LPUSH`` loop
  (``json.dumps``), in alternating blocks of ``BLOCK`` calls, ``n`` calls each;
- ``publish`` / ``publish_seed``: ``channel.publish({"t": ...})`` against ``PUBLISH`` of
  ``json.dumps``, alternating blocks, ``min(n, PUBLISH_MAX)`` each, each channel with one
  subscriber process (a ``Listener`` and the seed's ``pubsub.listen()`` loop) subscribed
  but stopped (SIGSTOP) meanwhile, so the figure is the publisher's;
- ``channel_p50_us``/``channel_p99_us`` and their ``_seed`` twins: publish to handler
  latency at 2,000 msg/s, in alternating 0.25 s slices of ``PACED_SECONDS`` each;
- ``latency_p50_us``/``latency_p99_us`` and ``_seed``: ``put`` to handler start at
  ``LATENCY_RATE`` msg/s per side, a redrelay worker (default settings) against the seed's
  ``BRPOP`` loop, both idle and waiting, messages alternating between the two;
- ``drain_limit``, ``drain_default``, ``drain_tuned``, ``drain_async``: the bare
  at-least-once loop (``bench/bare_loop.py``), the worker at default settings, at
  ``prefetch=200``, and with an ``async def`` no-op (``bench/apps/limit_app.py``), each
  started on ``drain_n`` queued messages, alternating, ``DRAIN_TURNS`` times;
- ``topic_drain`` / ``topic_bare``: a topic subscriber group (default settings) against a
  bare ``XREADGROUP`` + ``XACK`` loop with the same batch (``TOPIC_BATCH``, the default
  ``prefetch``), each started on ``drain_n`` published entries, alternating;
- ``scale_1`` / ``scale_2``: ``scale_n`` queued messages drained by one and by two worker
  processes (alternating), until the ``acked`` counter reaches the total, with the CPU
  cores each worker and ``redis-server`` used (``/proc/<pid>/stat``).

With ``--baseline-src DIR`` the two latency rows also run a third side, redrelay from
another source tree (e.g. ``main``), in the same alternation: keys ``*_us_baseline`` and
``*_baseline_ratio`` (this tree's ÷ the baseline's), so a change is judged against the
code before it under the same load.

Every ``*_ratio`` key is redrelay ÷ its baseline (for latency: redrelay's ÷ the seed's);
for put and publish, the median over pairs of blocks of the ratio within the pair.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import redis

from bench._common import (
    QUEUE,
    ROOT,
    cpu_meter,
    mark_every,
    percentile,
    read_marks,
    redis_pid,
    spawn,
    stop,
    tick,
    wait_marks,
    write_result,
)
from redrelay import Message, Relay
from redrelay.channel import Listener

BLOCK = 500
#: Publishes per side while the subscribers are stopped (their output buffers stay
#: well under Redis's default pub/sub limit of 8 MB per minute).
PUBLISH_MAX = 20_000
PACED_RATE, PACED_SECONDS, SLICE = 2000, 3.0, 0.25
LATENCY_RATE = 100
TOPIC_BATCH = 50
DRAIN_TURNS = 2
RAW_CHANNEL, RR_CHANNEL, BASE_CHANNEL = "bench-raw", "bench-rr", "bench-base"
LATENCY_QUEUE, BASE_QUEUE = "bench-latency", "bench-latency-base"
#: Header of a fresh unsigned JSON entry (``\\x1frr1:0:0:j``): the payload follows.
HEADER = 10


def worker(app: str, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "redrelay", "worker", f"bench.apps.{app}:relay",
        "--no-subscribers", "--grace", "5", *options,
    ]  # fmt: skip


def baseline_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment that runs redrelay from ``--baseline-src`` (bench/ from here)."""
    return {
        "PYTHONPATH": os.pathsep.join(
            [str(Path(args.baseline_src).resolve()), str(ROOT)]
        )
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# -- producer calls: put and publish, interleaved ------------------------------------------


def alternate(
    sides: dict[str, Callable[[int, int], None]], n: int, block: int = BLOCK
) -> dict[str, float]:
    """Run two sides' ``fn(first, count)`` in alternating blocks of ``block`` calls.

    Returns each side's calls per second over all its blocks, and ``ratio``: the median
    over pairs of blocks of the first side's rate ÷ the second's (a stall of the machine
    during one block moves one pair's ratio, not the result)."""
    spent = dict.fromkeys(sides, 0.0)
    names = list(sides)
    pairs = []
    for k, first in enumerate(range(0, n, block)):
        count = min(block, n - first)
        took = {}
        for name in names if k % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sides[name](first, count)
            took[name] = time.perf_counter() - start
            spent[name] += took[name]
        pairs.append(took[names[1]] / took[names[0]])
    out = {name: n / t for name, t in spent.items()}
    out["ratio"] = statistics.median(pairs)
    return out


def producers(args: argparse.Namespace, out: dict[str, Any]) -> None:
    r = redis.Redis.from_url(args.url)
    relay = Relay(args.url)
    q = relay.queue(QUEUE)
    q.put({"n": -1})  # the queue's first put registers it (one more round trip)
    dumps = json.dumps

    def put(first: int, count: int) -> None:
        for i in range(first, first + count):
            q.put({"n": i})

    def lpush(first: int, count: int) -> None:
        for i in range(first, first + count):
            r.lpush("seed", dumps({"n": i}).encode())

    rates = alternate({"put": put, "put_seed": lpush}, args.n)
    out["put_ratio"] = rates.pop("ratio")
    out.update(rates)
    r.flushall()
    relay.close()


def pubsub(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Both subscribers at once; paced slices, then unthrottled blocks, then END."""
    r = redis.Redis.from_url(args.url)
    relay = Relay(args.url)
    channel = relay.channel(RR_CHANNEL)
    base = relay.channel(BASE_CHANNEL)
    sides = ("raw", "rr", "base") if args.baseline_src else ("raw", "rr")
    files = {s: args.workdir / f"{s}-sub.json" for s in sides}
    procs = {}
    for side, path in files.items():
        path.unlink(missing_ok=True)
        procs[side] = spawn(
            [sys.executable, __file__, "rr-sub" if side == "base" else f"{side}-sub",
             "--url", args.url, "--out", str(path),
             "--channel", BASE_CHANNEL if side == "base" else RR_CHANNEL],
            args.workdir / f"{side}-sub.log",
            baseline_env(args) if side == "base" else None,
        )  # fmt: skip
    try:
        keys = {"raw": RAW_CHANNEL, "rr": channel.key, "base": base.key}
        keys = {side: keys[side] for side in sides}
        deadline = time.monotonic() + 20
        while any(r.pubsub_numsub(k)[0][1] < 1 for k in keys.values()):
            if time.monotonic() > deadline or any(
                p.poll() is not None for p in procs.values()
            ):
                raise RuntimeError("a subscriber did not subscribe")
            time.sleep(0.01)
        time.sleep(0.3)
        dumps, now_ns = json.dumps, time.monotonic_ns

        def raw(phase: str) -> None:
            r.publish(RAW_CHANNEL, dumps({"t": now_ns(), "k": phase}))

        def rr(phase: str) -> None:
            channel.publish({"t": now_ns(), "k": phase})

        def on_base(phase: str) -> None:
            base.publish({"t": now_ns(), "k": phase})

        senders = [raw, rr, on_base][: len(sides)]
        per_slice = int(PACED_RATE * SLICE)
        slices = max(2, int(2 * args.paced_seconds / SLICE))
        slices -= slices % len(senders)
        for s in range(slices):
            paced(senders[s % len(senders)], per_slice)

        rates = publish_rates(procs, rr, raw, min(args.n, PUBLISH_MAX))
        out["publish_ratio"] = rates.pop("ratio")
        out.update(rates)
        got = _wait_files(
            files,
            procs,
            {"raw": lambda: r.publish(RAW_CHANNEL, "END"),
             "rr": lambda: channel.publish("END"),
             "base": lambda: base.publish("END")},
        )  # fmt: skip
    finally:
        for p in procs.values():
            stop(p)
        relay.close()
    percentiles(out, "channel", got, slices // len(senders) * per_slice)
    r.flushall()


def publish_rates(
    procs: dict[str, Any],
    rr: Callable[[str], Any],
    raw: Callable[[str], Any],
    n: int,
) -> dict[str, float]:
    """Unthrottled publishes, alternating; the subscribers are stopped meanwhile (Redis
    keeps what they are sent in their output buffers): the publisher's cost, not how
    two subscriber processes share the cores with it."""

    def rr_block(first: int, count: int) -> None:
        for _ in range(count):
            rr("u")

    def raw_block(first: int, count: int) -> None:
        for _ in range(count):
            raw("u")

    for p in procs.values():
        os.killpg(p.pid, signal.SIGSTOP)
    try:
        return alternate({"publish": rr_block, "publish_seed": raw_block}, n)
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGCONT)


def paced(send: Callable[[str], Any], count: int) -> None:
    """``count`` paced messages at ``PACED_RATE`` msg/s."""
    due = time.monotonic()
    for _ in range(count):
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        send("p")
        due += 1 / PACED_RATE


def percentiles(
    out: dict[str, Any], prefix: str, got: dict[str, list[int]], sent: int
) -> None:
    """p50 and p99 (µs) of each side's latencies, what arrived, and the ratios."""
    for side, suffix in (("rr", ""), ("raw", "_seed")):
        lat = got[side]
        out[f"{prefix}_p50_us{suffix}"] = _us(percentile(lat, 50))
        out[f"{prefix}_p99_us{suffix}"] = _us(percentile(lat, 99))
        out[f"{prefix}_received{suffix}"] = f"{len(lat)}/{sent}"
    if "base" in got:
        lat = got["base"]
        out[f"{prefix}_p50_us_baseline"] = _us(percentile(lat, 50))
        out[f"{prefix}_p99_us_baseline"] = _us(percentile(lat, 99))
        out[f"{prefix}_received_baseline"] = f"{len(lat)}/{sent}"
    for q in ("p50", "p99"):
        out[f"{prefix}_{q}_ratio"] = ratio(
            out[f"{prefix}_{q}_us"], out[f"{prefix}_{q}_us_seed"]
        )
        if "base" in got:
            out[f"{prefix}_{q}_baseline_ratio"] = ratio(
                out[f"{prefix}_{q}_us"], out[f"{prefix}_{q}_us_baseline"]
            )
            out[f"{prefix}_{q}_baseline_seed_ratio"] = ratio(
                out[f"{prefix}_{q}_us_baseline"], out[f"{prefix}_{q}_us_seed"]
            )


def _us(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1000, 1)


def _wait_files(
    files: dict[str, Path],
    procs: dict[str, Any],
    end: dict[str, Callable[[], Any]],
    timeout: float = 60.0,
) -> dict[str, list[int]]:
    """Send END every half second until each side wrote its latencies (ns per line)."""
    deadline = time.monotonic() + timeout
    got: dict[str, list[int]] = {}
    resend = 0.0
    while len(got) < len(files):
        for side, path in files.items():
            if side not in got and path.exists():
                got[side] = [int(x) for x in path.read_text().split()]
        if len(got) == len(files):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no latencies from {sorted(set(files) - set(got))}")
        dead = [s for s, p in procs.items() if p.poll() is not None and s not in got]
        if dead:
            raise RuntimeError(f"the {dead[0]} process exited; see its log")
        if time.monotonic() >= resend:
            for side in set(files) - set(got):
                end[side]()
            resend = time.monotonic() + 0.5
        time.sleep(0.02)
    return got


def _write(path: str, latencies: list[int]) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text("".join(f"{x}\n" for x in latencies) or "\n")
    tmp.rename(path)


def raw_subscriber(args: argparse.Namespace) -> None:
    """The seed's subscriber: ``pubsub.listen()``; keeps the latency of paced messages."""
    r = redis.Redis.from_url(args.url)
    p = r.pubsub(ignore_subscribe_messages=True)
    p.subscribe(RAW_CHANNEL)
    latencies: list[int] = []
    for message in p.listen():
        now = time.monotonic_ns()
        data = message["data"]
        if data == b"END":
            _write(args.out, latencies)
            return
        body = json.loads(data)
        if body["k"] == "p":
            latencies.append(now - body["t"])


def rr_subscriber(args: argparse.Namespace) -> None:
    """A ``Listener`` with one subscriber: what ``redrelay worker`` runs for channels."""
    relay = Relay(args.url)
    latencies: list[int] = []
    done = threading.Event()

    @relay.subscriber(args.channel)
    def on_event(message: Message) -> None:
        now = time.monotonic_ns()
        body = message.body
        if body == "END":
            if not done.is_set():
                _write(args.out, latencies)
                done.set()
        elif body["k"] == "p":
            latencies.append(now - body["t"])

    listener = Listener(relay, relay.subscribers)
    listener.start()
    done.wait(600)
    listener.stop()


# -- put to handler start at a low rate -----------------------------------------------------


def latency(args: argparse.Namespace, out: dict[str, Any]) -> None:
    r = redis.Redis.from_url(args.url)
    relay = Relay(args.url)
    q = relay.queue(LATENCY_QUEUE)
    bq = relay.queue(BASE_QUEUE)
    sides = ("rr", "raw", "base") if args.baseline_src else ("rr", "raw")
    files = {s: args.workdir / f"{s}-latency.txt" for s in sides}
    for path in files.values():
        path.unlink(missing_ok=True)
    procs = {
        "rr": spawn(
            worker("latency_app", "--queue", LATENCY_QUEUE),
            args.workdir / "latency-worker.log",
            {"BENCH_REDIS_URL": args.url, "BENCH_LATENCY_OUT": str(files["rr"])},
        ),
        "raw": spawn(
            [
                sys.executable,
                __file__,
                "raw-latency",
                "--url",
                args.url,
                "--out",
                str(files["raw"]),
            ],
            args.workdir / "latency-raw.log",
        ),  # fmt: skip
    }
    if args.baseline_src:
        procs["base"] = spawn(
            worker("latency_app", "--queue", BASE_QUEUE),
            args.workdir / "latency-base.log",
            {"BENCH_REDIS_URL": args.url, "BENCH_LATENCY_OUT": str(files["base"]),
             "BENCH_LATENCY_QUEUE": BASE_QUEUE, **baseline_env(args)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (
            q.stats().consumers < 1
            or (args.baseline_src and bq.stats().consumers < 1)
            or not (args.workdir / "raw-ready").exists()
        ):
            if time.monotonic() > deadline or any(
                p.poll() is not None for p in procs.values()
            ):
                raise RuntimeError("the latency consumers did not start")
            time.sleep(0.01)
        time.sleep(args.settle)  # both waiting for work
        count = int(LATENCY_RATE * args.latency_seconds)
        n = len(sides)
        interval = 1 / (n * LATENCY_RATE)
        due = time.monotonic()
        for i in range(n * count):
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if i % n == 0:
                q.put({"t": time.monotonic_ns()})
            elif i % n == 1:
                r.lpush("seed-latency", json.dumps({"t": time.monotonic_ns()}))
            else:
                bq.put({"t": time.monotonic_ns()})
            due += interval
        got = _wait_files(
            files,
            procs,
            {"rr": lambda: q.put("END"), "raw": lambda: r.lpush("seed-latency", "END"),
             "base": lambda: bq.put("END")},
        )  # fmt: skip
    finally:
        for p in procs.values():
            stop(p)
        relay.close()
    percentiles(out, "latency", got, count)
    r.flushall()


def raw_latency(args: argparse.Namespace) -> None:
    """The seed's consumer: a ``BRPOP`` loop; keeps how late each message was taken."""
    r = redis.Redis.from_url(args.url)
    r.ping()
    (Path(args.out).parent / "raw-ready").touch()
    latencies: list[int] = []
    while True:
        got = r.brpop(["seed-latency"], timeout=60)
        now = time.monotonic_ns()
        if got is None:
            return
        if got[1] == b"END":
            _write(args.out, latencies)
            return
        latencies.append(now - json.loads(got[1])["t"])


# -- drains ---------------------------------------------------------------------------------


def drain_rate(
    args: argparse.Namespace, name: str, argv: list[str], env: dict[str, str], n: int
) -> float | None:
    """Start one process on a full queue or stream; its rate over the first ``n`` calls."""
    marks = args.workdir / f"{name}.marks"
    marks.unlink(missing_ok=True)
    env = {"BENCH_REDIS_URL": args.url, "BENCH_MARKS": str(marks),
           "BENCH_MARK_EVERY": str(mark_every(n)), **env}  # fmt: skip
    proc = spawn(argv, args.workdir / f"{name}.log", env)
    try:
        first, last, _, _ = wait_marks(marks, n, time.monotonic() + args.budget, proc)
    finally:
        stop(proc)
    if first is None or last is None or last <= first:
        return None
    return (n - 1) / (last - first)


def fill_queue(url: str, n: int) -> None:
    relay = Relay(url)
    q = relay.queue(QUEUE)
    for first in range(0, n, 1000):
        q.put_many([{"n": i} for i in range(first, min(n, first + 1000))])
    relay.close()


def fill_topic(url: str, n: int) -> None:
    relay = Relay(url)
    t = relay.topic(QUEUE, maxlen=None)
    for first in range(0, n, 1000):
        t.publish_many([{"n": i} for i in range(first, min(n, first + 1000))])
    relay.close()


def drains(args: argparse.Namespace, out: dict[str, Any]) -> None:
    r = redis.Redis.from_url(args.url)
    n = args.drain_n
    ready = f"redrelay:{{{QUEUE}}}:ready"
    rows = [
        ("drain_limit", [sys.executable, str(ROOT / "bench" / "bare_loop.py"), args.url, ready], {}, fill_queue),
        ("drain_default", worker("limit_app", "--queue", QUEUE), {}, fill_queue),
        ("drain_tuned", worker("limit_app", "--queue", QUEUE), {"BENCH_PREFETCH": "200"}, fill_queue),
        ("drain_async", worker("limit_app", "--queue", QUEUE), {"BENCH_ASYNC": "1"}, fill_queue),
        ("topic_bare", [sys.executable, __file__, "topic-bare", "--url", args.url], {}, fill_topic),
        ("topic_drain", worker("topic_app"), {}, fill_topic),
    ]  # fmt: skip
    got: dict[str, list[float]] = {name: [] for name, *_ in rows}
    for turn in range(args.turns):
        for name, argv, env, fill in rows if turn % 2 == 0 else rows[::-1]:
            r.flushall()
            fill(args.url, n)
            rate = drain_rate(args, f"{name}-{turn}", argv, env, n)
            if rate is not None:
                got[name].append(rate)
    for name, rates in got.items():
        out[name] = statistics.median(rates) if rates else None
        out[f"{name}_turns"] = [round(x) for x in rates]
    out["drain_n"] = n
    out["drain_default_ratio"] = ratio(out["drain_default"], out["drain_limit"])
    out["drain_tuned_ratio"] = ratio(out["drain_tuned"], out["drain_limit"])
    out["async_ratio"] = ratio(out["drain_async"], out["drain_default"])
    out["topic_ratio"] = ratio(out["topic_drain"], out["topic_bare"])
    r.flushall()


def topic_bare(args: argparse.Namespace) -> None:
    """``XREADGROUP`` of ``TOPIC_BATCH`` entries, decode, no-op, one ``XACK`` per batch."""
    r = redis.Redis.from_url(args.url)
    stream = Relay(args.url).topic(QUEUE).keys.stream
    r.xgroup_create(stream, "bare", id="0")
    loads = orjson.loads
    while True:
        got = r.xreadgroup("bare", "c1", {stream: ">"}, count=TOPIC_BATCH, block=500)
        if not got:
            continue
        entries = got[0][1]
        for _, fields in entries:
            loads(fields[b"e"][HEADER:])
            tick()
        r.xack(stream, "bare", *[sid for sid, _ in entries])


def scaling(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """One and two worker processes on ``scale_n`` queued messages, alternating."""
    r = redis.Redis.from_url(args.url)
    got: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for turn in range(args.turns):
        for processes in (1, 2) if turn % 2 == 0 else (2, 1):
            got[processes].append(drain_processes(args, r, processes, turn))
    for processes, runs in got.items():
        runs.sort(key=lambda x: x["rate"])
        out[f"scale_{processes}"] = runs[len(runs) // 2]["rate"]
        out[f"scale_{processes}_cpu"] = runs[len(runs) // 2]["cpu"]
    out["scale_n"] = args.scale_n
    out["scale_ratio"] = ratio(out["scale_2"], out["scale_1"])


def drain_processes(
    args: argparse.Namespace, r: redis.Redis, processes: int, turn: int
) -> dict[str, Any]:
    r.flushall()
    n = args.scale_n
    fill_queue(args.url, n)
    relay = Relay(args.url)
    acked_key = relay.queue(QUEUE).keys.stats
    procs = []
    try:
        for k in range(processes):
            marks = args.workdir / f"scale-{processes}-{turn}-{k}.marks"
            marks.unlink(missing_ok=True)
            env = {"BENCH_REDIS_URL": args.url, "BENCH_MARKS": str(marks),
                   "BENCH_MARK_EVERY": str(n)}  # fmt: skip
            proc = spawn(
                worker("limit_app", "--queue", QUEUE),
                args.workdir / f"scale-{processes}-{turn}-{k}.log",
                env,
            )
            procs.append((proc, marks))
        deadline = time.monotonic() + args.budget
        while not any(read_marks(m) for _, m in procs):
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.002)
        first = min(read_marks(m)[0][1] for _, m in procs if read_marks(m))
        pids = {"redis-server": redis_pid(r)} | {
            f"worker {k + 1}": p.pid for k, (p, _) in enumerate(procs)
        }
        with cpu_meter(pids) as cpu:
            while int(r.hget(acked_key, "acked") or 0) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError("timeout in the scaling drain")
                time.sleep(0.002)
            last = time.monotonic()
        window = last - first
        return {
            "rate": n / window,
            "cpu": {k: round(v / window, 2) for k, v in cpu.items()},
        }
    finally:
        for proc, _ in procs:
            stop(proc)
        relay.close()
        r.flushall()


SECTIONS = {
    "producers": producers,
    "pubsub": pubsub,
    "latency": latency,
    "drains": drains,
    "scaling": scaling,
}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"system": "limit", "n": args.n}
    for name in args.sections:
        try:
            SECTIONS[name](args, out)
        except Exception as exc:  # one section's failure does not hide the others
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["cores"] = os.cpu_count()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "role",
        choices=["main", "raw-sub", "rr-sub", "raw-latency", "topic-bare"],
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, default=Path("."))
    parser.add_argument("--out")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--channel", default=RR_CHANNEL, help="rr-sub: its channel")
    parser.add_argument(
        "--baseline-src",
        help="latency and pubsub: also run redrelay from this src/ directory",
    )
    args = parser.parse_args()
    if args.role == "raw-sub":
        raw_subscriber(args)
        return
    if args.role == "rr-sub":
        rr_subscriber(args)
        return
    if args.role == "raw-latency":
        raw_latency(args)
        return
    if args.role == "topic-bare":
        topic_bare(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    small = args.n < 2000  # the smoke test: a few seconds in all
    args.sections = [s for s in args.sections.split(",") if s]
    args.paced_seconds = 0.5 if small else PACED_SECONDS
    args.latency_seconds = 0.5 if small else 5.0
    args.drain_n = args.n if small else max(args.n, 50_000)
    args.scale_n = args.n if small else max(args.n, 100_000)
    args.turns = 1 if small else DRAIN_TURNS
    args.settle = 0.1 if small else 1.0
    write_result(args.out, measure(args))


if __name__ == "__main__":
    main()
