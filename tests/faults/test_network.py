"""Network faults through a TCP proxy: a partitioned worker, and resets during puts."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from redrelay import BrokerUnavailable, Relay
from redrelay._server import RedisServer, free_port
from redrelay.protocol.scripts import script

from .history import History, audit, check, entry_id, settled_audit
from .proxy import FaultProxy
from .workers import FaultWorker, consumers_of, held_by_pid, report, wait_for

LEASE, HEARTBEAT, PREFETCH, CONCURRENCY = 2.0, 0.5, 5, 4
ENV = {
    "FAULTS_LEASE": LEASE,
    "FAULTS_HEARTBEAT": HEARTBEAT,
    "FAULTS_PREFETCH": PREFETCH,
    "FAULTS_CONCURRENCY": CONCURRENCY,
}
#: The partition: three leases, so the takeover (after one) is well inside it.
CUT = 6.0


@pytest.fixture
def tcp_broker(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(appendonly=False, port=free_port(), unix_socket=False)


@pytest.fixture
def proxy(tcp_broker: RedisServer) -> Iterator[FaultProxy]:
    assert tcp_broker.port is not None
    with FaultProxy(("127.0.0.1", tcp_broker.port)) as p:
        yield p


def _stat(client: redis.Redis, key: str, name: str) -> int:
    return int(client.hget(key, name) or 0)


def test_partitioned_worker_is_taken_over_and_rejoins(
    tcp_broker: RedisServer,
    proxy: FaultProxy,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    """The cut worker reaches Redis through the proxy, the other one directly. During a
    6 s partition the other takes over after the lease; after it, the cut worker
    reconnects, its late acks are rejected, and nothing is lost."""
    client = redis.Redis.from_url(tcp_broker.url)
    q = Relay(tcp_broker.url, namespace=namespace).queue("work")
    keys = q.keys
    cut_worker = spawn(proxy.url, **ENV)
    spawn(tcp_broker.url, **ENV)
    wait_for(lambda: client.zcard(keys.leases) == 2, what="both workers joined")
    history.record_sent(q.put_many([{"s": 0.05}] * 400))
    wait_for(
        lambda: len(held_by_pid(client, keys, cut_worker.pid)) >= PREFETCH,
        what="the cut worker busy",
    )

    proxy.cut()
    t_cut = history.record_fault("partition", str(cut_worker.pid))
    held = held_by_pid(client, keys, cut_worker.pid)
    t_recovered = wait_for(
        lambda: _stat(client, keys.stats, "recovered") > 0 and time.time(),
        timeout=CUT,
        interval=0.01,
        what="the direct worker took over",
    )
    time.sleep(max(0.0, t_cut + CUT - time.time()))
    proxy.heal()
    t_heal = history.record_fault("heal")
    rejoined = wait_for(
        lambda: consumers_of(client, keys, cut_worker.pid),
        timeout=15,
        interval=0.05,
        what="the cut worker joined again",
    )
    t_rejoined = time.time()
    wait_for(
        lambda: set(history.sent) <= history.done_ids(),
        timeout=60,
        what="every message processed",
    )
    # After the partition, the cut worker works again.
    history.record_sent(q.put_many([{"s": 0.05}] * 100))
    wait_for(
        lambda: set(history.sent) <= history.done_ids(), what="second batch processed"
    )
    runs = history.runs()
    verdict = check(history)
    late = [
        r
        for r in runs
        if r.pid == cut_worker.pid and r.event == "done" and t_cut < r.t < t_heal
    ]
    after = [r for r in runs if r.pid == cut_worker.pid and r.t > t_rejoined]
    rejected = _stat(client, keys.stats, "rejected")
    report(
        "partition",
        cut_s=CUT,
        held=len(held),
        takeover_after_s=round(t_recovered - t_cut, 2),
        rejoined_after_heal_s=round(t_rejoined - t_heal, 2),
        ran_during_cut=len(late),
        rejected=rejected,
        duplicates=verdict.duplicates,
        lost=len(verdict.lost),
    )
    assert t_recovered - t_cut <= LEASE + HEARTBEAT + 2
    assert rejoined and cut_worker.alive()
    assert after, "the cut worker did not work again after the partition"
    # What it finished during the cut was taken over meanwhile: its acks are refused.
    assert rejected >= len(late)
    verdict.assert_ok(max_duplicates=PREFETCH * CONCURRENCY)
    final = settled_audit(client, keys)
    final.assert_consistent()
    assert (final.ready, final.in_flight, final.dead) == ([], 0, [])


def _messages_by_body(client: redis.Redis, key: str) -> dict[str, list[str]]:
    """Ready messages by the ``k`` of their body: key -> ids."""
    from redrelay.protocol.envelope import decode_entry

    out: dict[str, list[str]] = {}
    for entry in client.lrange(key, 0, -1):
        env = decode_entry(entry).envelope
        assert env is not None
        out.setdefault(env["b"]["k"], []).append(str(entry_id(entry)))
    return out


@pytest.mark.parametrize(
    "puts", [60, pytest.param(300, marks=[pytest.mark.soak, pytest.mark.timeout(600)])]
)
def test_put_with_dedup_key_survives_connection_resets(
    tcp_broker: RedisServer, proxy: FaultProxy, namespace: str, puts: int
) -> None:
    """Resets before the command reaches Redis, after it ran (the reply is lost), and
    short outages: a put with a dedup key writes exactly one message, and its outcome is
    never misreported — it returns the id of a message that exists, or raises
    BrokerUnavailable."""
    rng = random.Random()
    client = redis.Redis.from_url(tcp_broker.url)
    relay = Relay(proxy.url, namespace=namespace)
    q = relay.queue("work")
    q.put({"k": "warm-up"}, dedup_key="warm-up")  # connect before faults are armed
    outcomes: dict[str, str | None] = {}
    faults = {"none": 0, "request": 0, "reply": 0, "outage": 0}
    for n in range(puts):
        key = f"key-{n}"
        fault = rng.choices(list(faults), weights=[2, 4, 4, 1])[0]
        faults[fault] += 1
        healer = None
        if fault in ("request", "reply"):
            proxy.reset_next(fault)
        elif fault == "outage":  # connections refused for 0.05-1 s
            proxy.cut(refuse=True)
            healer = threading.Timer(rng.uniform(0.05, 1.0), proxy.heal)
            healer.start()
        try:
            outcomes[key] = q.put({"k": key}, dedup_key=key)
        except BrokerUnavailable:
            outcomes[key] = None
        finally:
            if healer is not None:
                healer.cancel()
            proxy.disarm()
            proxy.heal()
    found = _messages_by_body(client, q.keys.ready)
    unknown = [k for k, v in outcomes.items() if v is None]
    for key, msg_id in outcomes.items():
        ids = found.get(key, [])
        assert len(ids) <= 1, f"{key} written {len(ids)} times"
        if msg_id is not None:
            assert ids == [msg_id], f"{key}: put returned {msg_id}, Redis holds {ids}"
    # Retrying the unknown ones with the same key settles them, still exactly once.
    for key in unknown:
        msg_id = q.put({"k": key}, dedup_key=key)
        assert found.get(key, [msg_id]) == [msg_id]
    found = _messages_by_body(client, q.keys.ready)
    assert all(len(ids) == 1 for ids in found.values())
    assert set(found) == set(outcomes) | {"warm-up"}
    report(
        "put_resets",
        puts=len(outcomes),
        faults=faults,
        faults_fired=proxy.faults_fired,
        unknown_outcomes=len(unknown),
        messages=len(found) - 1,
    )
    assert faults["reply"] and proxy.faults_fired >= faults["reply"]


def test_plain_put_retried_after_a_lost_reply_may_be_written_twice(
    tcp_broker: RedisServer, proxy: FaultProxy, namespace: str
) -> None:
    """Without a dedup key, a put whose reply is lost is retried and written again:
    at-least-once on the producer side too. Both copies carry the same id (so a consumer
    can tell), nothing is lost, and a put_many batch is written whole each time."""
    client = redis.Redis.from_url(tcp_broker.url)
    q = Relay(proxy.url, namespace=namespace).queue("work")
    q.put({"k": "warm-up"})
    proxy.reset_next("reply")
    single = q.put({"k": "single"})
    proxy.reset_next("reply")
    batch = q.put_many([{"k": f"b{i}"} for i in range(5)])
    found = _messages_by_body(client, q.keys.ready)
    copies = {k: len(v) for k, v in found.items()}
    report("plain_put_lost_reply", copies=copies)
    assert proxy.faults_fired == 2
    assert found["single"] == [single] * copies["single"]
    assert 1 <= copies["single"] <= 2  # here 2: written, reply lost, retried, written
    for i, msg_id in enumerate(batch):
        assert found[f"b{i}"] == [msg_id] * copies["b0"]  # the batch as a whole
    assert 1 <= copies["b0"] <= 2


def test_fetch_whose_reply_is_lost_strands_nothing(
    tcp_broker: RedisServer,
    proxy: FaultProxy,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    client = redis.Redis.from_url(tcp_broker.url)
    q = Relay(tcp_broker.url, namespace=namespace).queue("work")
    fetch_sha = script("fetch").sha
    assert client.script_load(script("fetch").source) == fetch_sha  # no NOSCRIPT
    history.record_sent(q.put_many([{"op": "ok"}] * 30))
    proxy.lose_reply_to(fetch_sha.encode())  # the first fetch runs; its reply is lost
    spawn(proxy.url, FAULTS_LEASE=2, FAULTS_CONCURRENCY=1, FAULTS_PREFETCH=10)
    try:
        wait_for(
            lambda: set(history.sent) <= history.done_ids(),
            timeout=10,
            what="every message processed",
        )
    finally:
        state = audit(client, q.keys)
        report(
            "lost_fetch_reply",
            faults_fired=proxy.faults_fired,
            processed=len(history.done_ids()),
            stranded_in_flight=state.in_flight,
            rejected=_stat(client, q.keys.stats, "rejected"),
        )
