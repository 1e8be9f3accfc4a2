"""N real worker processes fire one every-second schedule while the test SIGKILLs and
restarts them at random: every tick is enqueued exactly once, no duplicate, no gap.

The default run is CI-sized: 3 processes for 8 s (about ten kills, each tick fired
by whichever scheduler holds the lock at that second). The ``soak`` variant runs 5 for
60 s, as the figures in docs/periodic.md; ``TEST_KILL_SECONDS`` and
``TEST_KILL_WORKERS`` override both.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import datetime

import pytest

from redrelay import Relay

from ..processes import Worker, wait_for

TARGET = "tests.apps.periodic_app:relay"


def seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seconds_", "workers_"),
    [
        pytest.param(8, 3, id="3x8s"),
        pytest.param(
            60, 5, id="5x60s", marks=[pytest.mark.soak, pytest.mark.timeout(300)]
        ),
    ],
)
def test_killed_and_restarted_schedulers_enqueue_each_tick_once(
    make_relay: Callable[..., Relay], redrelay_url: str, seconds_: int, workers_: int
) -> None:
    duration = float(os.environ.get("TEST_KILL_SECONDS", seconds_))
    count = int(os.environ.get("TEST_KILL_WORKERS", workers_))
    relay = make_relay()
    env = {"TEST_NAMESPACE": relay.namespace}
    rng = random.Random(13)

    def start(n: int) -> Worker:
        return Worker(TARGET, redrelay_url, env=env, name=f"scheduler-{n}")

    workers = [start(n) for n in range(count)]
    queue = relay.queue("ticks")
    kills = 0
    try:
        wait_for(lambda: queue.stats().ready >= 1, timeout=30, what="a first tick")
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.5))
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            kills += 1
            workers[victim] = start(count + kills)
        # Let the last tick before the end be enqueued by the survivors.
        time.sleep(1.5)
    finally:
        for w in workers:
            w.kill()
    ticks = [m.headers["scheduled_for"] for m in queue.peek(100_000)]
    values = sorted(seconds(t) for t in ticks)
    duplicates = len(values) - len(set(values))
    gaps = (values[-1] - values[0] + 1) - len(set(values))
    print(
        f"\nkill test: {count} workers, {kills} SIGKILLs in {duration:g}s: "
        f"{len(values)} ticks, {duplicates} duplicates, {gaps} gaps"
    )
    assert duplicates == 0
    assert values == list(range(values[0], values[-1] + 1))
    assert len(values) >= duration  # it covered the whole run
    assert kills >= 5  # it did kill, again and again
    [info] = relay.schedules.info()
    assert info.fired == len(values)
