"""Slow and stalled consumers: a stall is taken over, a long handler is never robbed."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis

from redrelay import Relay
from redrelay._server import RedisServer

from .history import History, audit, check, settled_audit
from .workers import FaultWorker, consumers_of, held_by_pid, report, wait_for

#: The keeper sweeps for expired leases this often (runner.SWEEP_INTERVAL).
SWEEP = 1.0


def _stat(client: redis.Redis, key: str, name: str) -> int:
    return int(client.hget(key, name) or 0)


def _running(history: History, pid: int) -> bool:
    """Whether process ``pid`` has a handler running (a start without its done)."""
    open_runs: dict[tuple[str, int], int] = {}
    for run in history.runs():
        if run.pid == pid:
            k = (run.id, run.attempt)
            open_runs[k] = open_runs.get(k, 0) + (1 if run.event == "start" else -1)
    return any(n > 0 for n in open_runs.values())


def test_stalled_worker_is_taken_over_and_its_late_acks_rejected(
    redis_server_factory: Callable[..., RedisServer],
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    lease, heartbeat, prefetch, concurrency = 2.0, 0.5, 5, 2
    env = {
        "FAULTS_LEASE": lease,
        "FAULTS_HEARTBEAT": heartbeat,
        "FAULTS_PREFETCH": prefetch,
        "FAULTS_CONCURRENCY": concurrency,
    }
    broker = redis_server_factory(appendonly=False)
    client = redis.Redis.from_url(broker.url)
    q = Relay(broker.url, namespace=namespace).queue("work")
    keys = q.keys
    stalled = spawn(broker.url, **env)
    rescuer = spawn(broker.url, **env)
    wait_for(lambda: client.zcard(keys.leases) == 2, what="both workers joined")
    history.record_sent(q.put_many([{"s": 0.3}] * 60))
    wait_for(lambda: _running(history, stalled.pid), what="a handler running")

    stalled.signal(signal.SIGSTOP)
    t_stop = history.record_fault("SIGSTOP", str(stalled.pid))
    held = held_by_pid(client, keys, stalled.pid)
    assert held, "the stalled worker held nothing"
    t_recovered = wait_for(
        lambda: _stat(client, keys.stats, "recovered") > 0 and time.time(),
        timeout=10,
        interval=0.01,
        what="the stalled worker's messages recovered",
    )
    takeover = t_recovered - t_stop
    time.sleep(max(0.0, t_stop + 3 * lease - time.time()))
    stalled.signal(signal.SIGCONT)
    t_cont = history.record_fault("SIGCONT", str(stalled.pid))
    # It notices that its lease was taken over, and joins again under a new id.
    rejoined = wait_for(
        lambda: consumers_of(client, keys, stalled.pid),
        timeout=10,
        interval=0.01,
        what="rejoined",
    )
    t_rejoined = time.time()
    wait_for(
        lambda: set(history.sent) <= history.done_ids(), what="every message processed"
    )
    wait_for(
        lambda: _stat(client, keys.stats, "rejected") >= 1,
        timeout=10,
        what="the late ack rejected",
    )
    runs = history.runs()
    rescued_at = {
        r.id: r.t
        for r in reversed(runs)
        if r.event == "start" and r.pid == rescuer.pid and r.t > t_stop
    }
    verdict = check(history)
    report(
        "stall",
        lease_s=lease,
        stopped_s=3 * lease,
        held=len(held),
        takeover_s=round(takeover, 2),
        first_rerun_s=round(min(rescued_at[i] for i in held) - t_stop, 2),
        rejected=_stat(client, keys.stats, "rejected"),
        recovered=_stat(client, keys.stats, "recovered"),
        duplicates=verdict.duplicates,
        lost=len(verdict.lost),
        rejoin_after_cont_s=round(t_rejoined - t_cont, 2),
    )
    assert takeover <= lease + heartbeat + 1 + SWEEP
    assert held <= set(rescued_at), "not every held message was taken over"
    # (a fetch already on its way to Redis at the SIGSTOP may add to what it held)
    assert _stat(client, keys.stats, "recovered") >= len(held)
    assert rejoined and stalled.alive()
    assert "taken over" in stalled.output()
    verdict.assert_ok(max_duplicates=prefetch * concurrency)
    final = settled_audit(client, keys)
    final.assert_consistent()
    assert (final.ready, final.in_flight, final.dead) == ([], 0, [])


@pytest.mark.parametrize(
    ("handler_s", "before_kill_s"),
    [
        pytest.param(10.0, 4.0, id="10s"),
        pytest.param(20.0, 8.0, id="20s", marks=pytest.mark.soak),
    ],
)
def test_long_handler_is_not_redelivered_across_a_broker_restart(
    redis_server_factory: Callable[..., RedisServer],
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
    handler_s: float,
    before_kill_s: float,
) -> None:
    """A handler 10x its lease (1 s lease, 10 s handler; 20 s in the soak variant) keeps
    its message through a kill -9 and restart of the broker (AOF everysec), with an idle
    competitor waiting: four leases pass before the kill, five after the restart."""
    env = {
        "FAULTS_LEASE": 1.0,
        "FAULTS_HEARTBEAT": 0.25,
        "FAULTS_CONCURRENCY": 1,
        "FAULTS_PREFETCH": 1,
    }
    broker = redis_server_factory(appendonly=True, appendfsync="everysec")
    client = redis.Redis.from_url(broker.url)
    q = Relay(broker.url, namespace=namespace).queue("work")
    spawn(broker.url, **env)
    spawn(broker.url, **env)
    wait_for(lambda: client.zcard(q.keys.leases) == 2, what="both workers joined")
    (msg_id,) = q.put_many([{"s": handler_s}])
    history.record_sent([msg_id])
    wait_for(lambda: history.runs(), what="the long handler started")
    time.sleep(before_kill_s)  # several leases, each renewed only by the heartbeats

    t_kill = history.record_fault("redis SIGKILL")
    broker.kill()
    broker.start()
    downtime = time.time() - t_kill
    client = redis.Redis.from_url(broker.url)

    wait_for(lambda: msg_id in history.done_ids(), timeout=30, what="handler done")
    wait_for(lambda: _stat(client, q.keys.stats, "acked") == 1, what="ack applied")
    runs = history.runs()
    report(
        "long_handler", lease_s=1.0, handler_s=handler_s, downtime_s=round(downtime, 2)
    )
    assert [(r.event, r.attempt) for r in runs] == [("start", 1), ("done", 1)]
    assert _stat(client, q.keys.stats, "recovered") == 0
    assert _stat(client, q.keys.stats, "rejected") == 0
    final = audit(client, q.keys)
    final.assert_consistent()
    assert (final.ready, final.in_flight, final.dead) == ([], 0, [])
