"""redrelay's drain against the bare at-least-once loop, in one run on one redis-server.

    .venv/bin/python bench/limit.py                      # n=100,000, 3 rounds
    .venv/bin/python bench/limit.py --baseline-src /work/main/src --rounds 5
    .venv/bin/python bench/limit.py --quick              # n=20,000, one round

Every row drains ``n`` queued no-op messages with one worker process, started on a full
queue; the rate is ``(n - 1) / (last - first)`` between the handler's first and ``n``-th
call (marks, as in ``bench/harness.py``). Rows run alternately within each round and the
median of the rounds is reported, with each row's ratio to the bare loop of the same run:

- ``bare``: ``bench/bare_loop.py``, the practical limit of one Python process;
- ``default``: ``redrelay worker`` with every setting at its default;
- ``prefetch=200``: the same, tuned (a labelled row, not the headline);
- ``async``: an ``async def`` no-op handler at default settings;
- ``async sleep``: 500 coroutines sleeping 50 ms each (ideal: 10,000 msg/s);
- ``result_ttl``: the default row with ``result_ttl=`` set (issue 14: >= 0.8x default);
- ``metrics + tracing``: ``metrics.instrument`` and ``tracing.instrument``, tracing
  through the OpenTelemetry API alone (no SDK: a process that passes trace context on
  without recording spans) or through the SDK sampling 1 %; with the no-op handler
  (against ``default``) and with a handler waiting 1 ms on four threads (4,000 messages,
  against the same without them): issue 12 asks for >= 0.95x;
- ``baseline``: with ``--baseline-src``, every redrelay row also runs from another
  source tree (e.g. ``main`` before a change), right after its own: the table shows
  both side by side;
- ``topic``: a topic subscriber group at default settings (``bench/apps/topic_app.py``)
  against a bare ``XREADGROUP`` + ``XACK`` loop with the same batch (the default
  ``prefetch``, ``bench/measure_limit.py topic-bare``), each started on ``n`` published
  entries; the topic row's ratio is to that loop, not to the queue's;
- ``priority depth D``: ``D`` messages queued at priorities 1..100, the first
  ``min(D, 20000)`` drained: flat from 10^3 to 10^6 if the prioritized path does not
  degrade with depth (priority 0 at the same depths beside it).

Each row also shows the CPU time per message of its process and of redis-server over the
same window (median of the rounds): steadier than the rates on a loaded machine, where a
process waits for a core as often as it runs. The machine's load average is printed with
the table: on a shared machine compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench._common import (
    QUEUE,
    ROOT,
    cpu_seconds,
    mark_every,
    spawn,
    stop,
    wait_marks,
)
from bench.measure_limit import fill_topic
from redrelay import Relay
from redrelay._server import RedisServer

TOPIC_WORKER = [
    sys.executable, "-m", "redrelay", "worker", "bench.apps.topic_app:relay",
    "--no-subscribers", "--grace", "5",
]  # fmt: skip
TOPIC_BARE_LOOP = [
    sys.executable, str(ROOT / "bench" / "measure_limit.py"), "topic-bare", "--url", "{url}",
]  # fmt: skip
#: The fill of a topic row (``n`` published entries), in place of a queue's priority.
TOPIC_FILL = "topic"
WORKER = [
    sys.executable, "-m", "redrelay", "worker", "bench.apps.limit_app:relay",
    "--queue", QUEUE, "--no-subscribers", "--grace", "5",
]  # fmt: skip


def fill(url: str, n: int, priority: int | None = 0) -> None:
    """Queue ``n`` messages; ``priority=None`` spreads them over priorities 1..100."""
    relay = Relay(url)
    q = relay.queue(QUEUE)
    for first in range(0, n, 1000):
        bodies = [{"n": i} for i in range(first, min(n, first + 1000))]
        p = (first // 1000) % 100 + 1 if priority is None else priority
        q.put_many(bodies, priority=p)
    relay.close()


def drain(
    url: str, workdir: Path, name: str, argv: list[str], env: dict[str, str], n: int
) -> tuple[float, float, float] | None:
    """Start one process on the full queue: its rate over the first ``n`` messages, and
    the CPU time per message (microseconds) of that process and of redis-server meanwhile
    (from the first mark on: start-up is not counted)."""
    marks = workdir / f"{name}.marks"
    marks.unlink(missing_ok=True)
    env = {"BENCH_REDIS_URL": url, "BENCH_MARKS": str(marks),
           "BENCH_MARK_EVERY": str(mark_every(n)), **env}  # fmt: skip
    client = redis.Redis.from_url(url)
    proc = spawn(argv, workdir / f"{name}.log", env)
    try:
        deadline = time.monotonic() + 300
        while not marks.exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        cpu, server = cpu_seconds(proc.pid), _server_cpu(client)
        first, last, count, _ = wait_marks(marks, n, deadline, proc)
        cpu, server = cpu_seconds(proc.pid) - cpu, _server_cpu(client) - server
    finally:
        stop(proc)
        client.close()
    if first is None or last is None or last == first:
        print(f"  {name}: no rate ({count} of {n} handled)", file=sys.stderr)
        return None
    return (n - 1) / (last - first), cpu / n * 1e6, server / n * 1e6


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


BARE = "bare at-least-once loop (the limit)"
DEFAULT = "redrelay worker, default settings"
TUNED = "redrelay worker, prefetch=200 (tuned)"
ASYNC = "async def no-op, default settings"
ASLEEP = "async def, 500 coroutines sleeping 50 ms"
#: The label prefix of a row run from ``--baseline-src``.
BASELINE = "baseline: "
RESULTS = "default settings, result_ttl=3600"
TOPIC_BARE = "bare XREADGROUP + XACK loop, same batch (the topic limit)"
TOPIC = "topic subscriber group, default settings"
#: Rows that run no redrelay worker: never twinned with ``--baseline-src``.
BARES = (BARE, TOPIC_BARE)
OBSERVED = "default settings, metrics + tracing (OTel API, no SDK)"
AOBSERVED = "async def no-op, metrics + tracing (OTel API, no SDK)"
WORK = "1 ms handler, 4 threads"
#: Rows judged against another row of the same round, with their targets: issue 14
#: (result_ttl) and issue 12 (metrics and tracing), the latter for no-op handlers and
#: for handlers that do some work (waiting 1 ms, four threads), as docs/metrics.md.
AGAINST = {
    TOPIC: (TOPIC_BARE, 0.8),
    RESULTS: (DEFAULT, 0.8),
    OBSERVED: (DEFAULT, 0.95),
    AOBSERVED: (ASYNC, 0.95),
    WORK + ", metrics + tracing (OTel API, no SDK)": (WORK, 0.95),
    WORK + ", metrics + tracing (OTel SDK, 1 % sampled)": (WORK, 0.95),
}
_WORK = {"BENCH_SLEEP": "0.001", "BENCH_CONCURRENCY": "4"}
#: The environment of each of those rows (and of the 1 ms row they compare with).
EXTRA = {
    RESULTS: {"BENCH_RESULT_TTL": "3600"},
    OBSERVED: {"BENCH_OBSERVE": "metrics+otel-api"},
    AOBSERVED: {"BENCH_OBSERVE": "metrics+otel-api", "BENCH_ASYNC": "1"},
    WORK: _WORK,
    WORK + ", metrics + tracing (OTel API, no SDK)": {
        **_WORK,
        "BENCH_OBSERVE": "metrics+otel-api",
    },
    WORK + ", metrics + tracing (OTel SDK, 1 % sampled)": {
        **_WORK,
        "BENCH_OBSERVE": "metrics+otel-sdk",
    },
}


def rows(
    args: argparse.Namespace,
) -> list[tuple[str, int, dict[str, str], list[str], Any]]:
    """(label, n, env, argv, how to fill) of every row, in the order they run."""
    n = args.n
    ready = f"redrelay:{{{QUEUE}}}:ready"
    bare = [sys.executable, str(ROOT / "bench" / "bare_loop.py"), "{url}", ready]
    out: list[tuple[str, int, dict[str, str], list[str], Any]] = [
        (BARE, n, {}, bare, 0),
        (DEFAULT, n, {}, WORKER, 0),
        (TUNED, n, {"BENCH_PREFETCH": "200"}, WORKER, 0),
        (ASYNC, n, {"BENCH_ASYNC": "1"}, WORKER, 0),
        (ASLEEP, min(n, 20000),
         {"BENCH_ASYNC": "1", "BENCH_SLEEP": "0.05", "BENCH_CONCURRENCY": "500"}, WORKER, 0),
        *((label, min(n, 4000) if label.startswith(WORK) else n, env, WORKER, 0)
          for label, env in EXTRA.items()),
        (TOPIC_BARE, n, {}, TOPIC_BARE_LOOP, TOPIC_FILL),
        (TOPIC, n, {}, TOPIC_WORKER, TOPIC_FILL),
    ]  # fmt: skip
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        out = [out[0]] + [r for r in out[1:] if any(w in r[0] for w in wanted)]
    if args.baseline_src:
        # Each worker row's twin from the other tree runs right after it.
        path = os.pathsep.join([str(Path(args.baseline_src).resolve()), str(ROOT)])
        twins = [out[0]]
        for label, k, env, argv, fill_with in out[1:]:
            twins.append((label, k, env, argv, fill_with))
            if label in BARES:
                continue
            twins.append((BASELINE + label, k, {**env, "PYTHONPATH": path}, argv,
                          fill_with))  # fmt: skip
        out = twins
    for depth in args.depths:
        k = min(depth, 20000)
        out.append((f"priorities 1..100, {depth:,} queued", k, {}, WORKER, None))
        out.append((f"priority 0, {depth:,} queued", k, {}, WORKER, 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n=20,000, one round")
    parser.add_argument("--baseline-src", help="a src/ directory to run as 'baseline'")
    parser.add_argument("--baseline-label", default="main")
    parser.add_argument("--depths", default="1000,100000,1000000",
                        help="comma-separated depths for the priority rows ('' for none)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--only", default="",
                        help="comma-separated parts of row labels to run (the bare loop always runs)")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 20_000, 1
    args.depths = [int(d) for d in args.depths.split(",") if d]
    workdir = Path(tempfile.mkdtemp(prefix="redrelay-limit-"))
    server = RedisServer(workdir / "redis", unix_socket=False, appendonly=False)
    server.start()
    url = server.url
    client = redis.Redis.from_url(url)
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    #: Per round: each row of AGAINST over the row it is judged against, same round.
    vs_default: dict[str, list[float]] = {}
    #: Per round: (worker, redis-server) CPU microseconds per message.
    cpus: dict[str, list[tuple[float, float]]] = {}
    try:
        plan = rows(args)
        for r in range(args.rounds):
            for i, (label, n, env, argv, priority) in enumerate(plan):
                client.flushall()
                depth = n
                if label.startswith("prior"):
                    depth = int(label.split(", ")[1].split()[0].replace(",", ""))
                if priority == TOPIC_FILL:
                    fill_topic(url, depth)
                else:
                    fill(url, depth, priority)
                argv = [a.replace("{url}", url) for a in argv]
                got = drain(url, workdir, f"r{r}-{i}", argv, env, n)
                rate = got[0] if got else None
                if got is not None:
                    results.setdefault(label, []).append(got[0])
                    cpus.setdefault(label, []).append((got[1], got[2]))
                    twin = label.removeprefix(BASELINE)
                    against = AGAINST.get(twin, ("", 0.0))[0]
                    if against and twin != label and against not in BARES:
                        against = BASELINE + against
                    base = results.get(against, [])
                    if against and len(base) == r + 1:
                        vs_default.setdefault(label, []).append(got[0] / base[-1])
                print(
                    f"  round {r + 1}: {label}: {rate or 0:,.0f} msg/s", file=sys.stderr
                )
        load_after = os.getloadavg()
    finally:
        server.stop()
    table = report(plan, results, vs_default, cpus, args, load_before, load_after)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


def report(
    plan: list[Any],
    results: dict[str, list[float]],
    vs_default: dict[str, list[float]],
    cpus: dict[str, list[tuple[float, float]]],
    args: argparse.Namespace,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> str:
    medians = {label: statistics.median(v) for label, v in results.items() if v}
    bare = medians.get(BARE)
    twins = bool(args.baseline_src)
    lines = [
        f"n = {args.n:,}, median of {args.rounds} round(s), {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()} with {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, redis-server on loopback TCP, no persistence; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        "",
    ]

    def cell(label: str) -> str:
        rate = medians.get(label)
        limit = medians.get(TOPIC_BARE) if TOPIC in label or label == TOPIC_BARE else bare
        ratio = f"{rate / limit:.2f}x" if rate and limit else "-"
        used = cpus.get(label)
        cpu = "-"
        if used:
            own = statistics.median(c[0] for c in used)
            server = statistics.median(c[1] for c in used)
            cpu = f"{own:.1f} + {server:.1f}"
        return f"{rate or 0:,.0f} | {ratio} | {cpu}"

    head = "msg/s | / bare loop | CPU µs/msg (process + redis)"
    if twins:
        lines += [
            f"| row | {head} | {args.baseline_label}: {head} |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
    else:
        lines += [f"| row | {head} |", "|---|--:|--:|--:|"]
    for label, *_ in plan:
        if label.startswith(BASELINE):
            continue
        row = f"| {label} | {cell(label)} |"
        if twins and label not in BARES and not label.startswith("prior"):
            row += f" {cell(BASELINE + label)} |"
        elif twins:
            row += " | | |"
        lines.append(row)
    return "\n".join(lines + [""] + notes(medians, vs_default, args))


def notes(
    medians: dict[str, float],
    vs_default: dict[str, list[float]],
    args: argparse.Namespace,
) -> list[str]:
    """The lines under the table: ratios between rows, against their targets."""
    lines: list[str] = []
    twins = bool(args.baseline_src)
    default, base = medians.get(DEFAULT), medians.get(BASELINE + DEFAULT)
    if default and base:
        lines.append(f"default / {args.baseline_label} default: {default / base:.3f}")
    asleep = medians.get(ASLEEP)
    if asleep:
        lines.append(
            f"500 coroutines x 50 ms: {asleep / 10_000:.0%} of the ideal 10,000 msg/s"
        )
    sync, aio = medians.get(DEFAULT), medians.get(ASYNC)
    if sync and aio:
        lines.append(f"async no-op / sync no-op: {aio / sync:.2f}")
    for label, (against, target) in AGAINST.items():
        for prefix in ("", BASELINE) if twins else ("",):
            ratios = vs_default.get(prefix + label)
            if ratios:
                who = f"{args.baseline_label}: " if prefix else ""
                lines.append(
                    f"{who}{label} / {against}, same round: "
                    f"{statistics.median(ratios):.2f} (rounds: "
                    f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= {target})"
                )
    return lines


if __name__ == "__main__":
    main()
