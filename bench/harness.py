"""Benchmark redrelay against raw redis-py and its peers, in one run.

Run it through ``bench/run`` (which builds the virtualenvs); see ``docs/benchmarks.md``.

It starts its own ``redis-server`` on loopback TCP (no persistence; ``--aof`` adds a
second pass with AOF ``everysec``), then, for each round, runs every system's driver in a
subprocess, one system after the other, in an order that rotates from round to round.
Each driver has a time bound: one that overruns is killed and reported as a timeout.
Redis is flushed between systems. Results go to ``<out>/latest.json``, ``latest.md`` and
``latest.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench import report
from bench._common import (
    ROOT,
    kill_group,
    machine_busy_seconds,
    own_cpu_seconds,
)
from bench.machine import machine
from redrelay._server import RedisServer

BENCH = ROOT / "bench"
SYSTEMS = ("redrelay", "raw", "limit", *report.PEERS)
PASSES = {"memory": "no persistence", "aof": "AOF everysec"}
#: Cores used by other processes (not the harness's) above which the figures are noisy.
BUSY_CORES = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--n", type=int, default=20000, help="messages per measurement (default 20000)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds; systems alternate within each (default 3)",
    )
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated systems (default all: {','.join(SYSTEMS)})",
    )
    p.add_argument(
        "--aof", action="store_true", help="add a second pass with AOF everysec"
    )
    p.add_argument(
        "--aof-only",
        default="",
        help="systems of the AOF pass (default: the same as the first pass)",
    )
    p.add_argument("--quick", action="store_true", help="N=2000, one round")
    p.add_argument(
        "--depth", action="store_true", help="drain at 10k vs 1M queued (slow)"
    )
    p.add_argument(
        "--scaling", action="store_true", help="drain with 1, 2 and 4 worker processes"
    )
    p.add_argument(
        "--profile", action="store_true", help="py-spy profile of the redrelay drain"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        help="seconds per system per round (default 150)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=BENCH / "results",
        help="output directory (default bench/results)",
    )
    p.add_argument(
        "--peers-python", default=str(BENCH / ".venv-peers" / "bin" / "python")
    )
    p.add_argument(
        "--arq-python", default=str(BENCH / ".venv-peers-arq" / "bin" / "python")
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.rounds = min(args.n, 2000), 1
    args.systems = [s for s in args.only.split(",") if s] or list(SYSTEMS)
    args.aof_systems = [s for s in args.aof_only.split(",") if s] or args.systems
    unknown = sorted(set(args.systems + args.aof_systems) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    if args.n < 10:
        p.error("--n must be at least 10")
    return args


def driver_argv(
    system: str, args: argparse.Namespace, url: str, workdir: Path, out: Path
) -> list[str]:
    common = [
        "--url",
        url,
        "--n",
        str(args.n),
        "--budget",
        str(max(10.0, args.timeout - 20)),
        "--workdir",
        str(workdir),
        "--out",
        str(out),
    ]
    if system == "redrelay":
        return [sys.executable, str(BENCH / "measure_redrelay.py"), "main", *common]
    if system == "raw":
        return [sys.executable, str(BENCH / "measure_raw.py"), "main", *common]
    if system == "limit":
        return [sys.executable, str(BENCH / "measure_limit.py"), "main", *common]
    python = args.arq_python if system == "arq" else args.peers_python
    return [python, str(BENCH / "measure_peer.py"), system, *common]


def run_driver(
    argv: list[str], workdir: Path, out: Path, timeout: float
) -> dict[str, Any]:
    """Run one driver in its own session; kill it and what it started on timeout."""
    if not Path(argv[0]).exists():
        return {
            "error": f"{argv[0]} is missing: run bench/run, which creates the peers' virtualenvs"
        }
    pids = workdir / "pids"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, BENCH_PIDS=str(pids), PYTHONPATH=path)
    out.unlink(missing_ok=True)
    log = workdir / "driver.log"
    timed_out = False
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=f, stderr=f, start_new_session=True
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid)
            proc.wait()
    for line in pids.read_text().split() if pids.exists() else []:
        kill_group(int(line))  # workers left behind by a killed driver
    pids.unlink(missing_ok=True)
    if timed_out:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.exists():
        return dict(json.loads(out.read_text()))
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"error": f"exit status {proc.returncode}: {' / '.join(tail)[-200:]}"}


def start_server(directory: Path, aof: bool) -> RedisServer:
    shutil.rmtree(directory, ignore_errors=True)
    return RedisServer(
        directory, unix_socket=False, appendonly=aof, appendfsync="everysec"
    ).start()


def run_pass(
    args: argparse.Namespace, mode: str, work: Path
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Every round of every system against one server; returns results and extras."""
    server = start_server(work / f"redis-{mode}", aof=mode == "aof")
    url = server.url + "/0"
    client = redis.Redis.from_url(url)
    systems = args.aof_systems if mode == "aof" else args.systems
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    extra: dict[str, Any] = {"redis_version": client.info("server")["redis_version"]}
    try:
        for rnd in range(args.rounds):
            shift = rnd % len(systems)
            for system in systems[shift:] + systems[:shift]:
                client.flushall()
                workdir = work / mode / f"round{rnd + 1}" / system
                workdir.mkdir(parents=True, exist_ok=True)
                started = time.monotonic()
                load = os.getloadavg()[0]
                busy, own = machine_busy_seconds(), own_cpu_seconds(os.getpid())
                result = run_driver(
                    driver_argv(system, args, url, workdir, workdir / "result.json"),
                    workdir,
                    workdir / "result.json",
                    args.timeout,
                )
                wall = time.monotonic() - started
                others = (
                    machine_busy_seconds() - busy - own_cpu_seconds(os.getpid()) + own
                )
                result["seconds"] = round(wall, 1)
                result["load_before"] = round(load, 2)
                result["others_cores"] = round(max(0.0, others / wall), 2)
                runs[system].append(result)
                _progress(mode, rnd, system, result)
        if mode == "memory":
            extra.update(run_extras(args, url, work / "extras"))
    finally:
        client.close()
        server.stop()
    return runs, extra


def _progress(mode: str, rnd: int, system: str, result: dict[str, Any]) -> None:
    keys = ("enqueue", "enqueue_bulk", "drain", "e2e", "publish", "put_ratio",
            "drain_default_ratio", "topic_ratio", "scale_ratio")  # fmt: skip
    shown = " ".join(
        f"{k}={result[k]:,.2f}" if k.endswith("ratio") else f"{k}={result[k]:,.0f}"
        for k in keys
        if isinstance(result.get(k), (int, float))
    )
    problems = [str(v) for k, v in result.items() if k.endswith("error")]
    print(
        f"[{mode} round {rnd + 1}] {system:<10} {result['seconds']:6.1f}s  "
        f"others {result['others_cores']:4.2f} cores  "
        f"{shown} {' '.join(problems)}",
        flush=True,
    )


def run_extras(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    """--depth, --scaling and --profile: redrelay only, each with its own time bound."""
    extra: dict[str, Any] = {}
    wanted = [
        (name, timeout)
        for name, timeout, on in (
            ("depth", 600, args.depth),
            ("scaling", 300, args.scaling),
            ("profile", 240, args.profile),
        )
        if on
    ]
    for name, timeout in wanted:
        workdir = work / name
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            str(BENCH / "measure_redrelay.py"),
            name,
            "--url",
            url,
            "--n",
            str(args.n),
            "--budget",
            str(timeout - 30),
            "--workdir",
            str(workdir),
            "--out",
            str(workdir / "result.json"),
        ]
        if name == "profile":
            pyspy = Path(args.peers_python).parent / "py-spy"
            argv += [
                "--pyspy",
                str(pyspy),
                "--profile-out",
                str(args.out / "drain-profile"),
            ]
        started = time.monotonic()
        extra[name] = run_driver(argv, workdir, workdir / "result.json", timeout)
        print(f"[extra] {name:<10} {time.monotonic() - started:6.1f}s", flush=True)
    return extra


def chart(args: argparse.Namespace, json_path: Path, png: Path) -> str | None:
    """Draw the PNG with whichever interpreter has matplotlib; return why not, if not."""
    reason = "no interpreter with matplotlib (run bench/run, which installs it)"
    for python in (args.peers_python, sys.executable):
        if not Path(python).exists():
            continue
        done = subprocess.run(
            [python, str(BENCH / "chart.py"), str(json_path), str(png)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode == 0:
            return None
        reason = (done.stderr.strip().splitlines() or ["?"])[-1]
    return f"no chart: {reason}"


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    cfg = doc["config"]
    lines = [
        "# redrelay benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB, {m['os']}; "
        f"Python {m['python']}; redis-server {m['redis_server']} on loopback TCP; "
        f"redis-py {m['redis_py']} with hiredis {m['hiredis']}.",
        f"Run: N = {cfg['n']:,} messages, {cfg['rounds']} rounds (systems alternate within each "
        f"round), {cfg['started']}, {cfg['minutes']} min. Median, min and max over the rounds; "
        "÷ seed is the ratio to the tutorial's raw redis-py pattern, ÷ best peer to the best "
        "peer of the group.",
        f"Load average (1, 5, 15 min) {_load(cfg.get('load_before'))} at the start, "
        f"{_load(cfg.get('load_after'))} at the end.",
        "",
    ]
    others = sorted(
        r["others_cores"]
        for runs in doc["runs"].values()
        for results in runs.values()
        for r in results
        if "others_cores" in r
    )
    if others:
        median = others[len(others) // 2]
        busy = (
            " — **the machine was busy: the figures are noisy**"
            if median > BUSY_CORES
            else ""
        )
        lines += [
            f"Other processes on the machine used a median of {median:.2f} cores "
            f"(max {others[-1]:.2f}) while the systems ran{busy}.",
            "",
        ]
    if m.get("peers"):
        lines += [
            "Peers: " + ", ".join(f"{k} {v}" for k, v in sorted(m["peers"].items())),
            "",
        ]
    for mode, runs in doc["runs"].items():
        lines += [f"## Redis with {PASSES[mode]}", ""]
        lines += report.table_lines(doc["rows"][mode], markdown=True) + [""]
        scaling = doc["extra"].get("scaling") if mode == "memory" else None
        cpu = report.cpu_lines(runs, True, scaling)
        if cpu:
            lines += ["What the drain keeps busy (median, in CPU cores):", "", *cpu, ""]
        if mode == "memory":
            limit = report.limit_lines(doc["rows"][mode], runs, True)
            lines += [*limit, ""] if limit else []
    lines += ["## Targets", "", *report.target_lines(doc["targets"], markdown=True), ""]
    more = report.extra_lines(doc["extra"], markdown=True)
    if more:
        lines += ["## Depth, scaling, profile", "", *more, ""]
    return "\n".join(lines)


def _load(values: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def _others_now(seconds: float = 1.0) -> float:
    """Cores used by other processes over the next second."""
    busy, own = machine_busy_seconds(), own_cpu_seconds(os.getpid())
    time.sleep(seconds)
    used = machine_busy_seconds() - busy - own_cpu_seconds(os.getpid()) + own
    return max(0.0, used / seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    busy = _others_now()
    if busy > BUSY_CORES:
        print(
            f"warning: other processes are using {busy:.1f} cores: the figures will be noisy",
            flush=True,
        )
    work = Path(tempfile.mkdtemp(prefix="redrelay-bench-"))
    started = time.time()
    doc: dict[str, Any] = {
        "config": {
            "n": args.n,
            "rounds": args.rounds,
            "systems": args.systems,
            "timeout": args.timeout,
            "started": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "command": " ".join(
                ["bench/run", *(sys.argv[1:] if argv is None else argv)]
            ),
        },
        "runs": {},
        "rows": {},
        "extra": {},
    }
    try:
        redis_version = "?"
        for mode in ["memory", "aof"] if args.aof else ["memory"]:
            runs, extra = run_pass(args, mode, work)
            redis_version = extra.pop("redis_version")
            doc["runs"][mode] = runs
            doc["rows"][mode] = report.rows(runs)
            doc["extra"].update(extra)
    finally:
        failed = [
            f"{mode}/{system}"
            for mode, runs in doc["runs"].items()
            for system, results in runs.items()
            if any(k.endswith("error") for r in results for k in r)
        ]
        if failed:
            print(f"errors in {', '.join(failed)}: logs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    doc["config"]["minutes"] = round((time.time() - started) / 60, 1)
    doc["config"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["machine"] = machine(args, redis_version)
    doc["peers"] = {
        s: r[0].get("config")
        for s, r in doc["runs"]["memory"].items()
        if r and r[0].get("config")
    }
    doc["targets"] = report.targets(
        doc["rows"]["memory"], doc["extra"], doc["runs"]["memory"]
    )
    json_path = args.out / "latest.json"
    json_path.write_text(
        json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
    (args.out / "latest.md").write_text(markdown(doc) + "\n")
    for mode in doc["runs"]:
        print(f"\n== Redis with {PASSES[mode]}: N = {args.n:,}, {args.rounds} rounds")
        print("\n".join(report.table_lines(doc["rows"][mode], markdown=False)))
        scaling = doc["extra"].get("scaling") if mode == "memory" else None
        print("\n".join(report.cpu_lines(doc["runs"][mode], False, scaling)))
        if mode == "memory":
            print(
                "\n".join(
                    report.limit_lines(doc["rows"][mode], doc["runs"][mode], False)
                )
            )
    print("\n" + "\n".join(report.target_lines(doc["targets"], markdown=False)))
    more = report.extra_lines(doc["extra"], markdown=False)
    if more:
        print("\n" + "\n".join(more))
    if not args.no_chart:
        problem = chart(args, json_path, args.out / "latest.png")
        if problem:
            print(problem)
    print(
        f"\nwrote {json_path}, {args.out / 'latest.md'}"
        + ("" if args.no_chart else f", {args.out / 'latest.png'}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
