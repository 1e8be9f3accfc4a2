"""A worker killed while it waits on an empty queue loses nothing.

An idle consumer thread sends its blocking wait (``BLMOVE``) and its next fetch on one
connection (worker/fetcher.py): Redis holds the fetch back until an entry arrives, then
runs it at once. These tests kill a real worker process in that wait: before anything
arrives (its held-back fetch must never run), and after the fetch ran for it while the
process was stopped (its in-flight entries must come back and run elsewhere).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import redis

from redrelay import Relay

from .helpers import WorkerProcess, done_counts, runs, wait_for


def _waiting(url: str) -> int:
    """How many connections Redis holds in a blocking BLMOVE with a command queued
    behind it (the held-back fetch: a plain wait has nothing behind it)."""
    with redis.Redis.from_url(url) as client:
        clients = client.client_list()
    return sum(
        1
        for c in clients
        if c["cmd"] == "blmove" and "b" in c["flags"] and int(c["qbuf"]) > 0
    )


def _idle_worker(start_worker: Callable[..., WorkerProcess], url: str) -> WorkerProcess:
    """A worker (two consumer threads, 1 s lease) whose threads both wait for work."""
    before = _waiting(url)  # other tests' workers, if any are still there
    worker = start_worker(TEST_LEASE="1", TEST_CONCURRENCY="2", TEST_PREFETCH="10")
    wait_for(
        lambda: _waiting(url) >= before + 2,
        timeout=60,
        what="both consumer threads in the blocking wait",
    )
    return worker


def test_killed_while_waiting_loses_nothing(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    first = _idle_worker(start_worker, redrelay_url)
    first.kill()
    ids = q.put_many([{"op": "ok"} for _ in range(20)])
    second = start_worker(TEST_LEASE="1")
    wait_for(
        lambda: set(done_counts(redrelay_url, ns)) == set(ids),
        timeout=60,
        what="every message done by the second worker",
    )
    assert {r[1] for r in runs(redrelay_url, ns)} == {second.pid}
    stats = wait_for(
        lambda: (s := q.stats()).in_flight == 0 and s, what="the last acks applied"
    )
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    assert stats.counters["acked"] == len(ids)


def test_fetch_held_back_by_the_wait_runs_for_a_stopped_worker_and_is_recovered(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    first = _idle_worker(start_worker, redrelay_url)
    first.signal(signal.SIGSTOP)  # it can send nothing more: what it sent is in Redis
    ids = q.put_many([{"op": "ok"} for _ in range(5)])
    # The put ended the wait; the fetch behind it took the entries for the stopped
    # process (prefetch 10): held under its lease, in no one's hands.
    wait_for(
        lambda: q.stats().in_flight == len(ids),
        what="the held-back fetch took the entries",
    )
    assert q.stats().ready == 0
    first.kill()
    second = start_worker(TEST_LEASE="1")
    wait_for(
        lambda: set(done_counts(redrelay_url, ns)) == set(ids),
        timeout=60,
        what="every message done by the second worker",
    )
    recorded = runs(redrelay_url, ns)
    assert {r[1] for r in recorded} == {second.pid}  # the first never ran a handler
    assert {r[3] for r in recorded} == {2}  # the delivery it took was counted
    stats = wait_for(
        lambda: (s := q.stats()).in_flight == 0 and s, what="the last acks applied"
    )
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    assert stats.counters["recovered"] == len(ids)
    assert stats.counters["acked"] == len(ids)
