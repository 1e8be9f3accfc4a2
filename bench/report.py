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


def table_lines(table: Sequence[dict[str, Any]], markdown: bool) -> list[str]:
    """The rows as a Markdown table or as aligned text, grouped by comparison."""
    header = ["", "median", "min", "max", "÷ seed", "÷ best peer"]
    lines: list[list[str]] = []
    current = None
    for row in table:
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
        lines.append([label, *cells, ratio(row["vs_seed"]), best])
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


#: redrelay's modules, for the profile's inclusive summary ("Lease.ack (leases.py)").
OUR_FILES = {
    f"{name}.py)"
    for name in (
        "runner",
        "leases",
        "dispatch",
        "envelope",
        "message",
        "handlers",
        "sync",
    )
}
#: CPU times tick at 10 ms: a shorter drain window says little about what limits it.
MIN_CPU_WINDOW = 1.0


def cpu_lines(
    runs: dict[str, list[dict[str, Any]]],
    markdown: bool,
    scaling: dict[str, Any] | None = None,
) -> list[str]:
    """CPU cores busy during the drain (median over rounds): the worker vs redis-server.

    Drains shorter than ``MIN_CPU_WINDOW`` seconds are left out; redrelay's comes from the
    one-process ``--scaling`` drain when it ran (200,000 messages).
    """
    out = []
    for system, result_list in runs.items():
        key = "drain_brpop_cpu" if system == "raw" else "drain_cpu"
        samples = [
            r[key]
            for r in result_list
            if isinstance(r.get(key), dict)
            and r.get(f"{key}_window_s", 1) >= MIN_CPU_WINDOW
        ]
        if not samples:
            continue
        worker = statistics.median(s["worker"] for s in samples)
        redis = statistics.median(s["redis"] for s in samples)
        name = "raw BRPOP loop" if system == "raw" else system
        out.append((name, worker, redis))
    one = (scaling or {}).get("drain_processes_1")
    if one:
        out.insert(0, ("redrelay (--scaling)", one["workers_cpu"], one["redis_cpu"]))
    if not out:
        return []
    if markdown:
        lines = ["| drain | worker (cores) | redis-server (cores) |", "|---|---|---|"]
        lines += [f"| {n} | {w:.2f} | {r:.2f} |" for n, w, r in out]
        return lines
    return ["drain CPU: worker cores / redis-server cores"] + [
        f"  {n:<16} {w:5.2f}  {r:5.2f}" for n, w, r in out
    ]


def _median(table: Sequence[dict[str, Any]], system: str, metric: str) -> float | None:
    for row in table:
        if row["system"] == system and row["metric"] == metric and "median" in row:
            return float(row["median"])
    return None


def targets(
    table: Sequence[dict[str, Any]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's targets, with the measured figure and whether it is met."""
    m = lambda s, k: _median(table, s, k)  # noqa: E731
    out = []

    def add(
        name: str, value: float | None, goal: float, better: str, shown: str
    ) -> None:
        met = (
            None
            if value is None
            else (value >= goal if better == "higher" else value <= goal)
        )
        out.append(
            {"target": name, "value": value, "goal": goal, "met": met, "shown": shown}
        )

    drain, dram = m("redrelay", "drain"), m("dramatiq", "drain")
    add("drain ≥ 150,000 msg/s", drain, 150_000, "higher", fmt(drain, "msg/s"))
    if drain and dram:
        add("drain ≈ 75× Dramatiq", drain / dram, 75, "higher", ratio(drain / dram))
    bulk = m("redrelay", "enqueue_bulk")
    add("put_many ≥ 300,000 msg/s", bulk, 300_000, "higher", fmt(bulk, "msg/s"))
    for name, sys_key, seed_key, goal, better in (
        ("put ≥ 0.9× seed LPUSH loop", "enqueue", "enqueue", 0.9, "higher"),
        ("publish ≥ 0.9× raw PUBLISH", "publish", "publish", 0.9, "higher"),
        (
            "p99 at 2,000 msg/s ≤ 1.2× raw",
            "latency_p99_paced_us",
            "latency_p99_paced_us",
            1.2,
            "lower",
        ),
    ):
        a, b = m("redrelay", sys_key), m("raw", seed_key)
        value = a / b if a is not None and b else None
        add(name, value, goal, better, ratio(value))
    e2e = m("redrelay", "e2e")
    add("end to end ≥ 80,000 msg/s", e2e, 80_000, "higher", fmt(e2e, "msg/s"))
    mem = m("redrelay", "memory_per_msg")
    add(
        "memory per 100-byte message ≤ 250 B",
        mem,
        250,
        "lower",
        fmt(mem, "bytes") + " B" if mem else "—",
    )
    rss = m("redrelay", "worker_idle_rss_mb")
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
        add(
            "drain at 1M queued within 20% of 10k",
            big / small,
            0.8,
            "higher",
            ratio(big / small),
        )
    return out


def target_lines(items: Sequence[dict[str, Any]], markdown: bool) -> list[str]:
    mark = {True: "met", False: "NOT met", None: "no data"}
    if markdown:
        lines = ["| target | measured | |", "|---|---|---|"]
        return lines + [
            f"| {t['target']} | {t['shown']} | {mark[t['met']]} |" for t in items
        ]
    return ["targets"] + [
        f"  {t['target']:<42} {t['shown']:>12}  {mark[t['met']]}" for t in items
    ]


def extra_lines(extra: dict[str, Any], markdown: bool) -> list[str]:
    """The depth, scaling and profile results, when they ran."""
    out: list[str] = []
    depth = extra.get("depth")
    if depth and "error" not in depth:
        out.append(
            "\n**Cost against depth** (one worker):"
            if markdown
            else "cost against depth (one worker)"
        )
        for key in ("drain_depth_10000", "drain_depth_1000000"):
            d = depth.get(key) or {}
            if d:
                out.append(
                    f"- {key.rsplit('_', 1)[1]} queued: {d['rate']:,.0f} msg/s "
                    f"(worker {d['workers_cpu']:.2f} cores, redis-server {d['redis_cpu']:.2f})"
                )
        if depth.get("memory_per_msg_1m"):
            out.append(
                f"- Redis memory per 100-byte message at 1M queued: {depth['memory_per_msg_1m']:.0f} bytes"
            )
    scaling = extra.get("scaling")
    if scaling and "error" not in scaling:
        out.append(
            f"\n**Scaling** ({scaling['depth']:,} queued):"
            if markdown
            else f"scaling ({scaling['depth']:,} queued)"
        )
        for k in (1, 2, 4):
            d = scaling.get(f"drain_processes_{k}")
            if d:
                out.append(
                    f"- {k} worker process{'es' if k > 1 else ''}: {d['rate']:,.0f} msg/s "
                    f"(workers {d['workers_cpu']:.2f} cores, redis-server {d['redis_cpu']:.2f})"
                )
    prof = (extra.get("profile") or {}).get("summary")
    if prof and prof.get("samples"):
        out.append(
            "\n**Drain profile** (py-spy, consumer thread):"
            if markdown
            else "drain profile (py-spy, consumer thread)"
        )
        out.append(
            f"- waiting for Redis: {prof['waiting_for_redis_pct']}% of {prof['samples']} samples"
        )
        out.append(
            "- self time: " + ", ".join(f"{n} {p}%" for n, p in prof["self"][:8])
        )
        ours = [(n, p) for n, p in prof["inclusive"] if n.split(" (")[-1] in OUR_FILES]
        out.append("- inclusive: " + ", ".join(f"{n} {p}%" for n, p in ours[:8]))
    for name in ("depth", "scaling", "profile"):
        if (extra.get(name) or {}).get("error"):
            out.append(f"- {name}: {extra[name]['error']}")
    return out
