"""Turn the drivers' per-round results into rows, a text table, Markdown and targets.

Each row is one system's figure for one comparison (a *group*): its median, min and max
over the rounds, its ratio to the group's seed baseline (the tutorial's raw redis-py
pattern) and to the best peer in the group.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import targets as _targets
from bench.report_extra import cpu_lines as cpu_lines
from bench.report_extra import extra_lines as extra_lines

PEERS = ("celery", "rq", "dramatiq", "huey", "arq", "faststream", "taskiq", "saq")

#: What each peer's one-at-a-time and bulk producer calls are.
PEER_CALLS = {
    "celery": ("task.delay()", None),
    "rq": ("queue.enqueue()", "queue.enqueue_many()"),
    "dramatiq": ("actor.send()", None),
    "huey": ("task()", None),
    "arq": ("pool.enqueue_job()", None),
    "faststream": ("broker.publish()", "broker.publish_batch()"),
    "taskiq": ("task.kiq()", None),
    "saq": ("queue.enqueue()", None),
}


@dataclass
class Group:
    """One comparison: entries are (system, metric key, label, role)."""

    title: str
    unit: str
    better: str  # "higher" or "lower"
    entries: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: "main" (sequential, against the seed and the peers) or "limit" (interleaved).
    section: str = "main"
    #: The limit driver's per-round ratio of the group's redrelay row to its baseline.
    ratio_key: str | None = None


def groups() -> list[Group]:
    """Every comparison of the table, in order."""
    g = [
        Group(
            "Enqueue, one message per call",
            "msg/s",
            "higher",
            [
                ("redrelay", "enqueue", "redrelay queue.put()", "redrelay"),
                ("raw", "enqueue", "seed: LPUSH loop", "seed"),
            ],
        ),
        Group(
            "Enqueue in batches of 1000",
            "msg/s",
            "higher",
            [
                ("redrelay", "enqueue_bulk", "redrelay queue.put_many()", "redrelay"),
                ("raw", "enqueue_pipeline", "seed: pipelined LPUSH", "seed"),
                ("raw", "enqueue_lpush_many", "raw: LPUSH of 1000 values", "raw"),
            ],
        ),
        Group(
            "Drain of N queued messages, one worker process, no-op handler",
            "msg/s",
            "higher",
            [
                ("redrelay", "drain", "redrelay worker (acks)", "redrelay"),
                ("raw", "drain_brpop", "seed: BRPOP loop (no acks)", "seed"),
                ("raw", "drain_rpop_count", "raw: RPOP key 200 (no acks)", "raw"),
                ("raw", "drain_reliable", "raw: BLMOVE + LREM (reliable)", "raw"),
            ],
        ),
        Group(
            "End to end: producer and worker at once",
            "msg/s",
            "higher",
            [
                ("redrelay", "e2e", "redrelay put_many() + worker", "redrelay"),
                ("raw", "e2e", "seed: LPUSH loop + BRPOP loop", "seed"),
            ],
        ),
        Group(
            "Channel publish (one subscriber)",
            "msg/s",
            "higher",
            [
                ("redrelay", "publish", "redrelay relay.publish()", "redrelay"),
                ("raw", "publish", "seed: PUBLISH", "seed"),
            ],
        ),
    ]
    g.append(
        Group(
            "Channel: rate the subscriber's handler keeps up with, unthrottled",
            "msg/s",
            "higher",
            [
                (
                    "redrelay",
                    "receive_rate_unthrottled",
                    "redrelay Listener",
                    "redrelay",
                ),
                (
                    "raw",
                    "receive_rate_unthrottled",
                    "seed: SUBSCRIBE + listen()",
                    "seed",
                ),
            ],
        )
    )
    for phase, what in (("unthrottled", "unthrottled"), ("paced", "at 2,000 msg/s")):
        for q in ("p50", "p99"):
            key = f"latency_{q}_{phase}_us"
            g.append(
                Group(
                    f"Channel latency {q}, {what}",
                    "µs",
                    "lower",
                    [
                        ("redrelay", key, "redrelay Listener", "redrelay"),
                        ("raw", key, "seed: SUBSCRIBE + listen()", "seed"),
                    ],
                )
            )
    g.append(
        Group(
            "Redis memory per queued 100-byte message",
            "bytes",
            "lower",
            [
                ("redrelay", "memory_per_msg", "redrelay queue", "redrelay"),
                ("raw", "memory_per_msg", "seed: list of raw values", "seed"),
            ],
        )
    )
    g.append(
        Group(
            "Worker RSS, idle (process tree)",
            "MB",
            "lower",
            [
                (
                    "redrelay",
                    "worker_idle_rss_mb",
                    "redrelay worker, fresh",
                    "redrelay",
                ),
                (
                    "redrelay",
                    "worker_rss_mb",
                    "redrelay worker, after the drain",
                    "redrelay",
                ),
            ],
        )
    )
    by_title = {x.title: x for x in g}
    for peer in PEERS:
        one, bulk = PEER_CALLS[peer]
        by_title["Enqueue, one message per call"].entries.append(
            (peer, "enqueue", f"{peer} {one}", "peer")
        )
        if bulk:
            by_title["Enqueue in batches of 1000"].entries.append(
                (peer, "enqueue_bulk", f"{peer} {bulk}", "peer")
            )
        by_title[
            "Drain of N queued messages, one worker process, no-op handler"
        ].entries.append((peer, "drain", f"{peer} worker", "peer"))
        by_title["Worker RSS, idle (process tree)"].entries.append(
            (peer, "worker_rss_mb", f"{peer} worker, after the drain", "peer")
        )
    for title, unit, better, key, entries in _targets.LIMIT_GROUPS:
        g.append(
            Group(
                title,
                unit,
                better,
                [
                    (_targets.LIMIT, metric, label, role)
                    for metric, label, role in entries
                ],
                section="limit",
                ratio_key=key,
            )
        )
    return g


def _values(
    runs: dict[str, list[dict[str, Any]]], system: str, key: str
) -> list[float]:
    out = []
    for result in runs.get(system, []):
        v = result.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def _status(runs: dict[str, list[dict[str, Any]]], system: str, key: str) -> str | None:
    """Why a figure is missing: 'timeout', an error, or None."""
    for result in runs.get(system, []):
        for k in (f"{key}_error", "drain_error" if key == "drain" else "", "error"):
            if k and result.get(k):
                return str(result[k])
    return None


def rows(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (group, entry) whose system ran."""
    out: list[dict[str, Any]] = []
    for group in groups():
        medians: dict[tuple[str, str], float] = {}
        built = []
        for system, key, label, role in group.entries:
            if system not in runs:
                continue
            values = _values(runs, system, key)
            row: dict[str, Any] = {
                "section": group.section,
                "group": group.title,
                "unit": group.unit,
                "better": group.better,
                "system": system,
                "metric": key,
                "label": label,
                "role": role,
                "values": values,
                "rounds": len(runs[system]),
            }
            if values:
                row.update(
                    median=statistics.median(values), min=min(values), max=max(values)
                )
                medians[(system, key)] = row["median"]
            else:
                row["status"] = _status(runs, system, key) or "no result"
            built.append(row)
        seed = next((r.get("median") for r in built if r["role"] == "seed"), None)
        peers = [r["median"] for r in built if r["role"] == "peer" and "median" in r]
        best = None
        if peers:
            best = max(peers) if group.better == "higher" else min(peers)
        best_name = next(
            (
                r["system"]
                for r in built
                if r["role"] == "peer" and r.get("median") == best
            ),
            None,
        )
        for row in built:
            m = row.get("median")
            row["vs_seed"] = m / seed if m is not None and seed else None
            if group.ratio_key and row["role"] == "redrelay":
                row["vs_seed"] = _targets.limit_ratio(runs, group.ratio_key)
            row["vs_best_peer"] = m / best if m is not None and best else None
            row["best_peer"] = best_name
        out += built
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "MB":
        return f"{value:,.1f}"
    if unit in ("µs", "bytes"):
        return f"{value:,.0f}"
    return f"{value:,.0f}"


def ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def table_lines(
    table: Sequence[dict[str, Any]], markdown: bool, section: str = "main"
) -> list[str]:
    """The rows of one section as a Markdown table or as aligned text, by comparison.

    In the ``limit`` section the ratio column divides by the group's baseline (the
    redrelay row's: the median of the per-round ratios)."""
    header = ["", "median", "min", "max", "÷ seed", "÷ best peer"]
    if section != "main":
        header = header[:4] + ["÷ baseline"]
    lines: list[list[str]] = []
    current = None
    for row in table:
        if row.get("section", "main") != section:
            continue
        if row["group"] != current:
            current = row["group"]
            title = f"{current} ({row['unit']}, {row['better']} is better)"
            lines.append([f"**{title}**" if markdown else title])
        unit = row["unit"]
        label = ("  " if not markdown else "") + row["label"]
        if "median" in row:
            cells = [
                fmt(row["median"], unit),
                fmt(row["min"], unit),
                fmt(row["max"], unit),
            ]
        else:
            cells = [str(row.get("status", "—"))[:40], "", ""]
        best = ""
        if row["vs_best_peer"] is not None and row["role"] != "peer":
            best = f"{ratio(row['vs_best_peer'])} ({row['best_peer']})"
        elif row["vs_best_peer"] is not None:
            best = ratio(row["vs_best_peer"])
        lines.append([label, *cells, ratio(row["vs_seed"]), best][: len(header)])
    if not lines:
        return []
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
        out += [
            "| " + " | ".join(c + [""] * (len(header) - len(c))) + " |" for c in lines
        ]
        return out
    full = [c for c in lines if len(c) > 1]
    widths = [max(len(c[i]) for c in [header, *full]) for i in range(len(header))]
    text = []
    for cells in [header, *lines]:
        if len(cells) == 1:
            text.append(cells[0])
            continue
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        text.append("  ".join([first, *rest]).rstrip())
    return text


def _median(table: Sequence[dict[str, Any]], system: str, metric: str) -> float | None:
    for row in table:
        if row["system"] == system and row["metric"] == metric and "median" in row:
            return float(row["median"])
    return None


def targets(
    table: Sequence[dict[str, Any]],
    extra: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """The targets with the measured figure and whether each is met.

    The ratios of issue 17 come from the interleaved ``limit`` driver when it ran
    (:mod:`bench.targets`); without it, put, publish and p99 from the sequential rows.
    """
    m = lambda s, k: _median(table, s, k)  # noqa: E731
    out = _targets.limit_targets(runs or {})
    add = lambda *a: _targets.add(out, *a)  # noqa: E731
    if not out:
        for name, key, goal, better in (
            ("put ≥ 0.95× seed LPUSH loop (sequential)", "enqueue", 0.95, "higher"),
            ("publish ≥ 0.95× raw PUBLISH (sequential)", "publish", 0.95, "higher"),
            ("p99 at 2,000 msg/s ≤ 1.2× raw (sequential)", "latency_p99_paced_us", 1.2, "lower"),
        ):  # fmt: skip
            a, b = m("redrelay", key), m("raw", key)
            value = a / b if a is not None and b else None
            add(name, value, goal, better, ratio(value))
    drain, dram = m("redrelay", "drain"), m("dramatiq", "drain")
    add("drain ≥ 150,000 msg/s", drain, 150_000, "higher", fmt(drain, "msg/s"))
    if drain and dram:
        add("drain ≈ 75× Dramatiq", drain / dram, 75, "higher", ratio(drain / dram))
    bulk = m("redrelay", "enqueue_bulk")
    add("put_many ≥ 300,000 msg/s", bulk, 300_000, "higher", fmt(bulk, "msg/s"))
    e2e = m("redrelay", "e2e")
    add("end to end ≥ 80,000 msg/s", e2e, 80_000, "higher", fmt(e2e, "msg/s"))
    mem, rss = m("redrelay", "memory_per_msg"), m("redrelay", "worker_idle_rss_mb")
    add("memory per 100-byte message ≤ 250 B", mem, 250, "lower",
        fmt(mem, "bytes") + " B" if mem else "—")  # fmt: skip
    add(
        "idle worker RSS ≤ 60 MB",
        rss,
        60,
        "lower",
        fmt(rss, "MB") + " MB" if rss else "—",
    )
    depth = extra.get("depth") or {}
    small = (depth.get("drain_depth_10000") or {}).get("rate")
    big = (depth.get("drain_depth_1000000") or {}).get("rate")
    if small and big:
        add("drain at 1M queued within 20% of 10k", big / small, 0.8, "higher",
            ratio(big / small))  # fmt: skip
    return out


target_lines = _targets.target_lines


def limit_lines(
    table: Sequence[dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    markdown: bool,
) -> list[str]:
    """The interleaved comparisons (system ``limit``): table, CPU split, load."""
    rows = table_lines(table, markdown, section="limit")
    if not rows:
        return []
    loads = [
        r["load_average"][0] for r in runs.get("limit", []) if r.get("load_average")
    ]
    head = (
        "Against the baselines, interleaved (bench/measure_limit.py): each pair ran in "
        "alternating slices of the same run, so both met the same load; ÷ baseline is "
        "the median of the per-round ratios"
        + (f"; load average {min(loads):.1f}–{max(loads):.1f} at the end of each round" if loads else "")
        + "."
    )  # fmt: skip
    title = "## Against the baselines (interleaved)" if markdown else "\n== " + head
    out = [title, ""] + ([head, ""] if markdown else []) + rows
    cpu = _targets.scaling_cpu_lines(runs, markdown)
    return out + ([""] + cpu if cpu else [])
