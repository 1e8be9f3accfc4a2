"""Write the README's speed table from a benchmark run (``bench/results/latest.json``).

    .venv/bin/python bench/readme.py                 # rewrite the block in README.md
    .venv/bin/python bench/readme.py --check         # exit 1 if README.md is not the run's
    .venv/bin/python bench/readme.py --print         # print the block only

The block sits between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md.
It names the machine, the command, the date and the load average of the run, so a
figure never travels without them; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

#: Rows of the main (sequential) table worth a line in the README: (metric, label).
MAIN_ROWS = [
    ("enqueue_bulk", "put_many, batches of 1000 (msg/s)"),
    ("drain", "drain, one worker process, default settings (msg/s)"),
    ("e2e", "end to end, put_many + worker at once (msg/s)"),
    ("memory_per_msg", "Redis memory per queued 100-byte message (bytes)"),
    ("worker_idle_rss_mb", "worker RSS, idle (MB)"),
]


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if unit == "MB" else f"{value:,.0f}"


def block(doc: dict[str, Any], command: str) -> str:
    m, cfg = doc["machine"], doc["config"]
    rows = doc["rows"]["memory"]
    load = cfg.get("load_before"), cfg.get("load_after")
    loads = " and ".join("/".join(f"{x:.1f}" for x in v) for v in load if v) or "?"
    out = [
        f"Measured with `{command}` on {cfg['started']}: {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, redis-server {m['redis_server']} on loopback TCP without "
        f"persistence; N = {cfg['n']:,}, median of {cfg['rounds']} rounds; load average "
        f"(1/5/15 min) {loads} at the start and the end of the run. Full table: "
        "[bench/results/latest.md](bench/results/latest.md); every row is explained in "
        "[docs/benchmarks.md](docs/benchmarks.md).",
        "",
        "| redrelay against its baseline, interleaved in one run | redrelay | baseline | ratio | target |",
        "|---|--:|--:|--:|---|",
    ]  # fmt: skip
    goals = {t["target"]: t for t in doc.get("targets", [])}
    from bench.targets import LIMIT_GROUPS, LIMIT_TARGETS

    by_key = {key: label for label, key, _, _ in LIMIT_TARGETS}
    goal_of = {
        key: f"{'≥' if better == 'higher' else '≤'} {goal:g}×"
        for _, key, goal, better in LIMIT_TARGETS
    }
    for title, unit, _better, key, _entries in LIMIT_GROUPS:
        group = [r for r in rows if r.get("section") == "limit" and r["group"] == title]
        base = next((r for r in group if r["role"] == "seed"), None)
        for row in (r for r in group if r["role"] != "seed"):
            ratio = row.get("vs_seed")
            target = ""
            if row["role"] == "redrelay" and key in by_key:
                t = goals.get(by_key[key])
                if t is not None:
                    met = {True: "met", False: "**not met**", None: "no data"}[t["met"]]
                    target = f"{goal_of[key]}: {met}"
            out.append(
                f"| {title} ({unit}): {row['label']} | {_num(row.get('median'), unit)} | "
                f"{_num(base.get('median') if base else None, unit)} "
                f"({base['label'] if base else '—'}) | "
                f"{'' if ratio is None else f'{ratio:.2f}×'} | {target} |"
            )
    async_target = goals.get(
        next(lb for lb, k, _, _ in LIMIT_TARGETS if k == "async_ratio")
    )
    if async_target and async_target["value"] is not None:
        met = "met" if async_target["met"] else "**not met**"
        out.append(
            f"| async def no-op ÷ sync no-op (default settings) | | | "
            f"{async_target['value']:.2f}× | ≥ 0.8×: {met} |"
        )
    main = {
        r["metric"]: r for r in rows if r["system"] == "redrelay" and r.get("section", "main") == "main"
    }  # fmt: skip
    out += ["", "| redrelay, sequential rows | median |", "|---|--:|"]
    for metric, label in MAIN_ROWS:
        row = main.get(metric)
        if row is not None:
            out.append(f"| {label} | {_num(row.get('median'), row['unit'])} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "latest.json"
    )
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--command", help="the command that made the run (default: from it)")
    p.add_argument("--check", action="store_true")
    p.add_argument("--print", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    doc = json.loads(args.json.read_text())
    command = args.command or doc["config"].get("command") or "bench/run"
    text = block(doc, command)
    if args.print:
        print(text)
        return 0
    readme = args.readme.read_text()
    if START not in readme or END not in readme:
        print(f"{args.readme}: no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{text}\n{END}{tail}"
    if args.check:
        if new != readme:
            print(f"{args.readme} is not the table of {args.json}", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    print(f"wrote the speed table of {args.readme} from {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
