"""N real worker processes fire one every-second schedule while the test SIGKILLs and
restarts them at random: every tick is enqueued exactly once, no duplicate, no gap.

``TEST_KILL_SECONDS`` sets how long (default 20; the figures in docs/periodic.md
come from 60), ``TEST_KILL_WORKERS`` how many processes (default 5).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from redrelay import Relay

from ..worker.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def start_worker(url: str, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "REDRELAY_URL": url,
            "TEST_NAMESPACE": namespace,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        }
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redrelay",
                "worker",
                "tests.apps.periodic_app:relay",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@pytest.mark.slow
def test_killed_and_restarted_schedulers_enqueue_each_tick_once(
    make_relay: Callable[..., Relay], redrelay_url: str, tmp_path: Path
) -> None:
    duration = float(os.environ.get("TEST_KILL_SECONDS", "20"))
    count = int(os.environ.get("TEST_KILL_WORKERS", "5"))
    relay = make_relay()
    log = tmp_path / "workers.log"
    rng = random.Random(13)
    workers = [start_worker(redrelay_url, relay.namespace, log) for _ in range(count)]
    queue = relay.queue("ticks")
    kills = 0
    try:
        wait_for(lambda: queue.stats().ready >= 1, timeout=30, what="a first tick")
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.5))
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            kills += 1
            workers[victim] = start_worker(redrelay_url, relay.namespace, log)
        # Let the last tick before the end be enqueued by the survivors.
        time.sleep(1.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
        for w in workers:
            w.wait(10)
    ticks = [m.headers["scheduled_for"] for m in queue.peek(100_000)]
    values = sorted(seconds(t) for t in ticks)
    duplicates = len(values) - len(set(values))
    gaps = (values[-1] - values[0] + 1) - len(set(values))
    print(
        f"\nkill test: {count} workers, {kills} SIGKILLs in {duration:g}s: "
        f"{len(values)} ticks, {duplicates} duplicates, {gaps} gaps"
    )
    assert duplicates == 0, log.read_text()[-3000:]
    assert values == list(range(values[0], values[-1] + 1)), log.read_text()[-3000:]
    assert len(values) >= duration  # it covered the whole run
    assert kills >= 5  # it did kill, again and again
    [info] = relay.schedules.info()
    assert info.fired == len(values)
