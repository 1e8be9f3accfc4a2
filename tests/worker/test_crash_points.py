"""Crash at every step: a worker that exits at a named step loses nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from redrelay import QueueStats, Relay
from redrelay._faults import CRASH_STATUS

from .helpers import ROOT, WorkerProcess, done_counts, wait_for


def _settled(stats: QueueStats) -> bool:
    return (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)


def _all_accounted(relay: Relay, url: str, ids: list[str], failing: set[str]) -> None:
    q = relay.queue("work")
    stats = q.stats()
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)
    dead = {d.id for d in q.dead_letters(limit=1000)}
    assert dead == failing
    assert set(done_counts(url, relay.namespace)) == set(ids) - failing


@pytest.mark.parametrize("handlers", ["threads", "async"])
@pytest.mark.parametrize(
    "step", ["fetch", "handler", "ack", "retry", "bury", "recover"]
)
def test_crash_at_step_loses_nothing(
    step: str,
    handlers: str,
    app_relay: Relay,
    redrelay_url: str,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if handlers == "async":  # async def handlers on the worker's event loop
        monkeypatch.setenv("TEST_ASYNC", "1")
        monkeypatch.setenv("TEST_CONCURRENCY", "8")
    q = app_relay.queue("work")
    ids = q.put_many([{"op": "ok"} for _ in range(20)])
    failing = set(q.put_many([{"op": "fail"} for _ in range(2)]))
    if step == "recover":  # leave an expired consumer behind for the crashing worker
        victim = start_worker(TEST_LEASE="1", REDRELAY_CRASH_AT="fetch")
        assert victim.wait() == CRASH_STATUS
    crashing = start_worker(TEST_LEASE="1", REDRELAY_CRASH_AT=step)
    assert crashing.wait(30) == CRASH_STATUS
    start_worker(TEST_LEASE="1")
    # Done records alone are not enough: a worker that crashed at "ack" recorded its
    # handlers as done, and its deliveries come back only when its lease expires.
    wait_for(
        lambda: (
            len(done_counts(redrelay_url, app_relay.namespace)) == len(ids)
            and q.stats().dead == len(failing)
            and _settled(q.stats())
        ),
        timeout=30,
        what="everything processed or dead",
    )
    _all_accounted(app_relay, redrelay_url, ids + sorted(failing), failing)


def test_crash_inside_put_many_writes_nothing(
    app_relay: Relay, redrelay_url: str
) -> None:
    code = (
        "from redrelay import QueueStats, Relay\n"
        f"relay = Relay({redrelay_url!r}, namespace={app_relay.namespace!r})\n"
        "relay.queue('work').put_many(range(5000))\n"
    )
    env = {"REDRELAY_CRASH_AT": "put_many", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], env=env, timeout=30)
    assert result.returncode == CRASH_STATUS
    assert app_relay.queue("work").stats().ready == 0
