"""Pub/sub throughput and latency, shared by the raw and the redrelay measurements.

The publisher (the driver) starts a subscriber process, waits until Redis counts it as
subscribed, then runs two phases, each ended by an ``END`` message:

1. unthrottled: ``n`` publishes as fast as one thread can; ``publish`` is that rate;
2. paced: ``paced_count(n)`` publishes at ``PACED_RATE`` msg/s.

Each message carries ``time.monotonic_ns()`` at publish; the subscriber's handler
computes the latency when it runs and, at ``END``, writes one JSON line per phase
(received, p50, p99, and the rate at which the handler got them) to
``$BENCH_PUBSUB_OUT``. ``END:<phase>`` is sent again every
half second until the subscriber reports, since a subscriber that drops messages when it
falls behind (redrelay's bounded per-subscriber queue does) may drop the first one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ._common import percentile, spawn, stop

#: The paced phase's rate (msg/s) and its longest duration (s).
PACED_RATE, PACED_SECONDS = 2000, 3.0
PHASES = ("unthrottled", "paced")


def paced_count(n: int) -> int:
    return max(1, min(n, int(PACED_RATE * PACED_SECONDS)))


class Collector:
    """The subscriber's side: feed it each message's latency (ns), or its END marker."""

    def __init__(self) -> None:
        self.out = os.environ["BENCH_PUBSUB_OUT"]
        self.latencies: list[int] = []
        self.first = self.last = 0.0
        self.phase = 0
        self.done = False

    def on(self, latency_ns: int | str) -> None:
        if isinstance(latency_ns, int):
            self.last = time.monotonic()
            if not self.latencies:
                self.first = self.last
            self.latencies.append(latency_ns)
            return
        if self.done or latency_ns != f"END:{self.phase}":
            return  # a repeated END
        lat = self.latencies
        window = self.last - self.first
        record = {
            "phase": PHASES[self.phase],
            "received": len(lat),
            "p50_us": _us(percentile(lat, 50)),
            "p99_us": _us(percentile(lat, 99)),
            "receive_rate": (len(lat) - 1) / window if window > 0 else None,
        }
        with open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.latencies = []
        self.phase += 1
        self.done = self.phase == len(PHASES)


def _us(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1000, 1)


def run_subscriber(latencies: Iterable[int | str]) -> None:
    """Drive a :class:`Collector` from an iterator of latencies (the raw subscriber)."""
    collector = Collector()
    for latency in latencies:
        collector.on(latency)
        if collector.done:
            return


def publish_phases(
    args: argparse.Namespace,
    *,
    publish: Callable[[int], Any],
    end: Callable[[str], Any],
    subscribers: Callable[[], int],
    subscriber_argv: Sequence[str],
) -> dict[str, Any]:
    """Run both phases against a subscriber process; return the rows."""
    n = args.n
    out_file = Path(args.workdir) / "pubsub.jsonl"
    out_file.unlink(missing_ok=True)
    proc = spawn(
        subscriber_argv,
        Path(args.workdir) / "subscriber.log",
        {"BENCH_PUBSUB_OUT": str(out_file)},
    )
    rows: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 15
        while subscribers() < 1:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the subscriber did not subscribe")
            time.sleep(0.01)
        time.sleep(0.2)
        start = time.perf_counter()
        for _ in range(n):
            publish(time.monotonic_ns())
        rows["publish"] = n / (time.perf_counter() - start)
        _wait_lines(out_file, 1, proc, lambda: end("END:0"))
        count = paced_count(n)
        interval = 1 / PACED_RATE
        due = time.monotonic()
        for _ in range(count):
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            publish(time.monotonic_ns())
            due += interval
        lines = _wait_lines(out_file, 2, proc, lambda: end("END:1"))
    finally:
        stop(proc)
    for record, sent in zip(lines, (n, count), strict=True):
        phase = record["phase"]
        rows[f"latency_p50_{phase}_us"] = record["p50_us"]
        rows[f"latency_p99_{phase}_us"] = record["p99_us"]
        rows[f"received_{phase}"] = f"{record['received']}/{sent}"
        rows[f"receive_rate_{phase}"] = record["receive_rate"]
    return rows


def _wait_lines(
    path: Path, count: int, proc: Any, end: Callable[[], Any], timeout: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    resend = 0.0
    while True:
        if time.monotonic() >= resend:
            end()
            resend = time.monotonic() + 0.5
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(
                f"the subscriber reported {len(lines)} of {count} phases "
                f"(status {proc.poll()}); see its log in the work directory"
            )
        time.sleep(0.01)


if __name__ == "__main__":  # pragma: no cover - imported only
    sys.exit("bench/pubsub.py is a module of the harness; run bench/run")
