"""Crash safety with real worker processes: SIGKILL, SIGSTOP, SIGTERM, self-killing handlers."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from redrelay import Relay

from .helpers import WorkerProcess, done_counts, runs, wait_for


def _started_by(url: str, ns: str, pid: int) -> int:
    return sum(1 for r in runs(url, ns) if r[1] == pid and r[2] == "start")


def _most_at_once(url: str, ns: str, pid: int) -> int:
    """The most handlers of ``pid`` between their start and done records at one time."""
    running = most = 0
    for _, who, event, _ in runs(url, ns):
        if who == pid:
            running += 1 if event == "start" else -1 if event == "done" else 0
            most = max(most, running)
    return most


@pytest.mark.parametrize(
    "handlers",
    [
        {},
        # async def handlers: 20 coroutines at once on the worker's event loop
        {"TEST_ASYNC": "1", "TEST_CONCURRENCY": "20"},
    ],
    ids=["threads", "async"],
)
def test_sigkill_mid_batch_loses_nothing(
    app_relay: Relay,
    redrelay_url: str,
    start_worker: Callable[..., WorkerProcess],
    handlers: dict[str, str],
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    ids = q.put_many([{"op": "sleep", "s": 0.01} for _ in range(300)])
    first = start_worker(TEST_LEASE="1", TEST_PREFETCH="20", **handlers)
    wait_for(
        lambda: _started_by(redrelay_url, ns, first.pid) >= 30, what="first worker busy"
    )
    first.kill()
    held = q.stats().in_flight
    assert held > 0, (
        "the killed worker held nothing: the test did not kill it mid-batch"
    )
    second = start_worker(TEST_LEASE="1", TEST_PREFETCH="20", **handlers)
    wait_for(
        lambda: len(done_counts(redrelay_url, ns)) == len(ids),
        timeout=60,
        what="all messages done",
    )
    assert set(done_counts(redrelay_url, ns)) == set(ids)
    # A handler records "done" before its ack is applied (acks are batched): wait for
    # the last acks, then nothing may be left anywhere.
    stats = wait_for(
        lambda: (s := q.stats()).in_flight == 0 and s, what="the last acks applied"
    )
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    assert stats.counters["recovered"] == held
    # the recovered ones were delivered again, with attempt 2
    second_attempts = [
        r for r in runs(redrelay_url, ns) if r[1] == second.pid and r[3] == 2
    ]
    assert len(second_attempts) >= 1
    if handlers:  # coroutines really ran side by side (two threads cannot exceed 2)
        assert _most_at_once(redrelay_url, ns, second.pid) > 2


def test_long_handler_is_not_redelivered(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    (msg_id,) = q.put_many([{"op": "sleep", "s": 3.0}])  # 3x the 1 s lease
    a = start_worker(TEST_LEASE="1")
    b = start_worker(
        TEST_LEASE="1"
    )  # an idle competitor that would steal it if leases were per message
    wait_for(
        lambda: done_counts(redrelay_url, ns)[msg_id] == 1,
        timeout=20,
        what="long handler done",
    )
    wait_for(lambda: q.stats().counters.get("acked") == 1, what="ack applied")
    assert [r[2] for r in runs(redrelay_url, ns)] == ["start", "done"]
    assert q.stats().counters.get("recovered", 0) == 0
    assert q.stats().counters.get("rejected", 0) == 0
    for w in (a, b):
        w.signal(signal.SIGTERM)
        assert w.wait() == 0


def test_stalled_worker_is_taken_over_and_its_late_ack_rejected(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    (msg_id,) = q.put_many([{"op": "sleep", "s": 1.0}])
    stalled = start_worker(TEST_LEASE="1", TEST_CONCURRENCY="1")
    wait_for(
        lambda: _started_by(redrelay_url, ns, stalled.pid) == 1,
        what="stalled worker started",
    )
    stalled.signal(signal.SIGSTOP)
    rescuer = start_worker(TEST_LEASE="1", TEST_CONCURRENCY="1")
    wait_for(
        lambda: done_counts(redrelay_url, ns)[msg_id] == 1,
        timeout=20,
        what="rescuer finished it",
    )
    assert q.stats().counters["recovered"] == 1
    stalled.signal(signal.SIGCONT)
    wait_for(
        lambda: q.stats().counters.get("rejected", 0) == 1,
        timeout=20,
        what="late ack rejected",
    )
    assert (
        done_counts(redrelay_url, ns)[msg_id] == 2
    )  # at-least-once: it ran twice, acked once
    assert q.stats().counters["acked"] == 1
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)
    for w in (stalled, rescuer):
        w.signal(signal.SIGTERM)
        assert w.wait() == 0


@pytest.mark.parametrize(
    "handlers", [{}, {"TEST_ASYNC": "1"}], ids=["threads", "async"]
)
def test_sigterm_is_graceful(
    app_relay: Relay,
    redrelay_url: str,
    start_worker: Callable[..., WorkerProcess],
    handlers: dict[str, str],
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    ids = q.put_many([{"op": "sleep", "s": 1.0} for _ in range(10)])
    worker = start_worker(
        TEST_CONCURRENCY="1", TEST_PREFETCH="10", TEST_LEASE="30", **handlers
    )
    wait_for(
        lambda: _started_by(redrelay_url, ns, worker.pid) == 1,
        what="first handler started",
    )
    assert q.stats().in_flight == 10
    worker.signal(signal.SIGTERM)
    # unstarted deliveries go back at once, while the running handler still runs
    wait_for(
        lambda: q.stats().ready == 9, timeout=5, what="unstarted deliveries given back"
    )
    assert worker.wait() == 0
    assert done_counts(redrelay_url, ns) == {ids[0]: 1}
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.consumers) == (9, 0, 0)
    assert [m.id for m in q.peek(9)] == ids[
        1:
    ]  # they kept their place at the front, in order
    assert "stopped" in worker.output()


def test_second_signal_exits_at_once_and_nothing_is_lost(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    ns, q = app_relay.namespace, app_relay.queue("work")
    (msg_id,) = q.put_many([{"op": "sleep", "s": 30.0}])
    worker = start_worker(TEST_CONCURRENCY="1", TEST_LEASE="1")
    wait_for(
        lambda: _started_by(redrelay_url, ns, worker.pid) == 1, what="handler started"
    )
    worker.signal(signal.SIGTERM)
    time.sleep(0.2)
    worker.signal(signal.SIGTERM)
    assert worker.wait(5) == 1
    assert q.stats().in_flight == 1  # still held: it returns under the lease rule
    wait_for(
        lambda: app_relay.queue("work").stats().consumers == 1,
        what="lease still listed",
    )
    rescuer = start_worker(TEST_CONCURRENCY="1", TEST_LEASE="1")
    wait_for(
        lambda: _started_by(redrelay_url, ns, rescuer.pid) == 1,
        timeout=20,
        what="redelivered",
    )
    assert runs(redrelay_url, ns)[-1][3] == 2
    rescuer.kill()  # its handler sleeps 30 s: a graceful stop would wait for it


def test_handler_that_kills_its_process_is_dead_lettered(
    app_relay: Relay, redrelay_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    q = app_relay.queue("work")
    (poison,) = q.put_many([{"op": "die"}])
    healthy = q.put_many([{"op": "ok"} for _ in range(5)])
    # the supervisor restarts each child the poison kills
    start_worker(
        "--processes",
        "2",
        TEST_LEASE="1",  # each death waits for the lease: 1 s, as the other crash tests
        TEST_MAX_DELIVERIES="3",
        TEST_CONCURRENCY="1",
    )
    wait_for(
        lambda: poison in {d.id for d in q.dead_letters()},
        timeout=60,
        what="poison dead",
    )
    (dead,) = [d for d in q.dead_letters() if d.id == poison]
    assert "max_deliveries=3" in dead.reason
    assert dead.attempt == 4
    wait_for(
        lambda: set(done_counts(redrelay_url, app_relay.namespace)) == set(healthy),
        what="others done",
    )
