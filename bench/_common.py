"""Helpers shared by every benchmark process, whatever its virtualenv: stdlib only.

The no-op handler of every system calls :func:`tick`, which counts calls in this process
and appends ``"<count> <time.monotonic()>"`` to the file named by ``$BENCH_MARKS`` on the
first call and every ``$BENCH_MARK_EVERY`` calls. ``time.monotonic()`` is the system-wide
``CLOCK_MONOTONIC`` on Linux, so marks written by a worker and read by the driver compare.
A handful of file appends per run costs nothing next to a broker round trip, and no
system pays an extra Redis command per message for being measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: The repository root: benchmark processes run from here (so ``bench.apps`` imports).
ROOT = Path(__file__).resolve().parent.parent
#: The queue (or list, stream, channel) every system uses.
QUEUE = "bench"

_count = 0
_marks = os.environ.get("BENCH_MARKS", "")
_every = max(1, int(os.environ.get("BENCH_MARK_EVERY", "1000")))


def tick() -> None:
    """The whole no-op handler: count, and mark the first call and every ``_every``-th."""
    global _count
    _count += 1
    if _marks and (_count == 1 or _count % _every == 0):
        with open(_marks, "a") as f:
            f.write(f"{_count} {time.monotonic()!r} {os.getpid()}\n")


def read_marks(path: str | os.PathLike[str]) -> list[tuple[int, float, int]]:
    """The marks written so far: ``(count, time, pid)``, in file order."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    marks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            marks.append((int(parts[0]), float(parts[1]), int(parts[2])))
    return marks


def wait_marks(
    path: str | os.PathLike[str],
    target: int,
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    poll: float = 0.002,
) -> tuple[float | None, float | None, int, float | None]:
    """Wait until a mark reaches ``target`` calls (one process counting).

    Returns ``(first, done, count, at)``: the time of the first call, the time of the mark
    that reached ``target`` (None on timeout), and the highest count seen and its time (a
    partial rate when the deadline passed first).
    """
    while True:
        marks = read_marks(path)
        if marks:
            count, at = max((m[0], m[1]) for m in marks)
            if count >= target:
                done = min(m[1] for m in marks if m[0] >= target)
                return marks[0][1], done, count, at
        if time.monotonic() > deadline:
            if not marks:
                return None, None, 0, None
            return marks[0][1], None, count, at
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the worker exited with status {proc.returncode}"
                f" after {max((m[0] for m in marks), default=0)} jobs"
            )
        time.sleep(poll)


def spawn(
    argv: Sequence[str], log: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a worker in a session of its own (so its whole tree can be killed), from ROOT.

    Its pid is appended to ``$BENCH_PIDS`` so that the harness can kill what a timed-out
    driver left behind.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), full_env.get("PYTHONPATH")])
    )
    full_env.update(env or {})
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    pids = os.environ.get("BENCH_PIDS")
    if pids:
        with open(pids, "a") as f:
            f.write(f"{proc.pid}\n")
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the worker's process group, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def kill_group(pid: int) -> None:
    """SIGKILL a process group (for leftovers of a driver that timed out)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    todo += [
                        int(c)
                        for c in Path(f"/proc/{p}/task/{task}/children")
                        .read_text()
                        .split()
                    ]
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB (10**6 bytes)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    tick_hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick_hz


def own_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``'s whole tree, reaped children included (``cutime``/``cstime``)."""
    tick_hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
    return total / tick_hz


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``)."""
    try:
        fields = [
            int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def redis_pid(client: Any) -> int:
    """The redis-server's pid (from ``INFO server``), for its CPU time."""
    return int(client.info("server")["process_id"])


@contextlib.contextmanager
def cpu_meter(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """Measure CPU seconds used by each named process tree over the ``with`` block."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    used: dict[str, float] = {}
    yield used
    for name, pid in pids.items():
        used[name] = round(cpu_seconds(pid) - before[name], 3)


def write_result(path: str | None, result: dict[str, Any]) -> None:
    """Write a driver's result (the harness reads it), or print it when no path is given."""
    text = json.dumps(result, indent=1, sort_keys=True)
    if path:
        Path(path).write_text(text)
    else:
        sys.stdout.write(text + "\n")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def mark_every(n: int) -> int:
    """A mark interval that divides ``n`` (so a mark lands exactly on the ``n``-th call),
    giving about ten progress marks: the largest divisor of ``n`` up to ``n // 10``."""
    limit = max(1, n // 10)
    return max(d for d in range(1, limit + 1) if n % d == 0)
