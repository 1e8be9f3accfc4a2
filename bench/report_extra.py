"""The parts of the report beside the main table: CPU split of the drains, and the
``--depth``, ``--scaling`` and ``--profile`` extras."""

from __future__ import annotations

import statistics
from typing import Any

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
