"""The interleaved comparisons (``bench/measure_limit.py``) as report groups, and targets.

Each comparison of the ``limit`` driver puts a redrelay figure beside its baseline (the
seed's raw redis-py loop, the bare at-least-once loop, one process against two), measured
in alternating slices of one run. Its ratio is the median over the rounds of the ratio
measured within each round, not the ratio of two medians.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LIMIT = "limit"

#: (title, unit, better, per-round ratio key, [(metric, label, role)]); role "seed" is
#: the baseline the ratio divides by.
LIMIT_GROUPS: list[tuple[str, str, str, str, list[tuple[str, str, str]]]] = [
    ("put, one message per call", "msg/s", "higher", "put_ratio", [
        ("put", "redrelay queue.put()", "redrelay"),
        ("put_seed", "seed: LPUSH loop", "seed"),
    ]),
    ("publish, one subscriber", "msg/s", "higher", "publish_ratio", [
        ("publish", "redrelay channel.publish()", "redrelay"),
        ("publish_seed", "seed: PUBLISH", "seed"),
    ]),
    ("channel latency p50 at 2,000 msg/s", "µs", "lower", "channel_p50_ratio", [
        ("channel_p50_us", "redrelay Listener", "redrelay"),
        ("channel_p50_us_seed", "seed: SUBSCRIBE + listen()", "seed"),
    ]),
    ("channel latency p99 at 2,000 msg/s", "µs", "lower", "channel_p99_ratio", [
        ("channel_p99_us", "redrelay Listener", "redrelay"),
        ("channel_p99_us_seed", "seed: SUBSCRIBE + listen()", "seed"),
    ]),
    ("put to handler start p50, 100 msg/s", "µs", "lower", "latency_p50_ratio", [
        ("latency_p50_us", "redrelay worker, default settings", "redrelay"),
        ("latency_p50_us_seed", "seed: BRPOP loop", "seed"),
    ]),
    ("put to handler start p99, 100 msg/s", "µs", "lower", "latency_p99_ratio", [
        ("latency_p99_us", "redrelay worker, default settings", "redrelay"),
        ("latency_p99_us_seed", "seed: BRPOP loop", "seed"),
    ]),
    ("drain of queued messages, one process", "msg/s", "higher", "drain_default_ratio", [
        ("drain_default", "redrelay worker, default settings", "redrelay"),
        ("drain_tuned", "redrelay worker, prefetch=200 (tuned)", "tuned"),
        ("drain_async", "redrelay worker, async def no-op, default settings", "async"),
        ("drain_limit", "bare at-least-once loop (the limit)", "seed"),
    ]),
    ("topic drain, one process", "msg/s", "higher", "topic_ratio", [
        ("topic_drain", "redrelay topic subscriber, default settings", "redrelay"),
        ("topic_bare", "bare XREADGROUP + XACK loop, same batch", "seed"),
    ]),
    ("drain with worker processes (default settings)", "msg/s", "higher", "scale_ratio", [
        ("scale_2", "two worker processes", "redrelay"),
        ("scale_1", "one worker process", "seed"),
    ]),
]  # fmt: skip

#: The targets of issue 17: (label, per-round ratio key, goal, better).
LIMIT_TARGETS = [
    ("put ≥ 0.95× the seed LPUSH loop", "put_ratio", 0.95, "higher"),
    ("publish ≥ 0.95× raw PUBLISH", "publish_ratio", 0.95, "higher"),
    ("channel p99 at 2,000 msg/s ≤ 1.2× raw", "channel_p99_ratio", 1.2, "lower"),
    ("put→handler p50 at 100 msg/s ≤ 1.5× BRPOP loop", "latency_p50_ratio", 1.5, "lower"),
    ("put→handler p99 at 100 msg/s ≤ 1.5× BRPOP loop", "latency_p99_ratio", 1.5, "lower"),
    ("default drain ≥ 0.9× the bare loop", "drain_default_ratio", 0.9, "higher"),
    ("async def no-op ≥ 0.8× the sync one", "async_ratio", 0.8, "higher"),
    ("topic drain ≥ 0.8× bare XREADGROUP + XACK", "topic_ratio", 0.8, "higher"),
    ("two worker processes ≥ 1.6× one", "scale_ratio", 1.6, "higher"),
]  # fmt: skip


def limit_ratio(runs: dict[str, list[dict[str, Any]]], key: str) -> float | None:
    """The median over the rounds of a per-round ratio of the ``limit`` driver."""
    values = sorted(
        float(r[key])
        for r in runs.get(LIMIT, [])
        if isinstance(r.get(key), (int, float))
    )
    return values[len(values) // 2] if values else None


def add(
    out: list[dict[str, Any]],
    name: str,
    value: float | None,
    goal: float,
    better: str,
    shown: str,
) -> None:
    met = (
        None
        if value is None
        else (value >= goal if better == "higher" else value <= goal)
    )
    out.append(
        {"target": name, "value": value, "goal": goal, "met": met, "shown": shown}
    )


def limit_targets(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if LIMIT not in runs:
        return out
    for label, key, goal, better in LIMIT_TARGETS:
        value = limit_ratio(runs, key)
        add(out, label, value, goal, better, _ratio(value))
    return out


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def target_lines(items: Sequence[dict[str, Any]], markdown: bool) -> list[str]:
    mark = {True: "met", False: "NOT met", None: "no data"}
    if markdown:
        lines = ["| target | measured | |", "|---|---|---|"]
        return lines + [
            f"| {t['target']} | {t['shown']} | {mark[t['met']]} |" for t in items
        ]
    return ["targets"] + [
        f"  {t['target']:<48} {t['shown']:>12}  {mark[t['met']]}" for t in items
    ]


def scaling_cpu_lines(
    runs: dict[str, list[dict[str, Any]]], markdown: bool
) -> list[str]:
    """The CPU split of the one- and two-process drains (first round that has it)."""
    for result in runs.get(LIMIT, []):
        one, two = result.get("scale_1_cpu"), result.get("scale_2_cpu")
        if not (one and two):
            continue
        n = result.get("scale_n", 0)
        head = (
            f"CPU cores used during the scaling drain ({n:,} queued, "
            f"/proc/<pid>/stat; {result.get('cores', '?')} cores on the machine):"
        )
        lines = [head, ""] if markdown else [head]
        for label, cpu in (("one process", one), ("two processes", two)):
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()))
            lines.append(f"- {label}: {parts}" if markdown else f"  {label}: {parts}")
        return lines
    return []
