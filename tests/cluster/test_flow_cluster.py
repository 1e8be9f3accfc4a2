"""Priorities and flow limits on a real 3-primary Redis Cluster: every script stays in
its queue's slot (a CROSSSLOT error would fail these)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from redrelay import Message, Relay
from redrelay.worker.runner import Runner

from ..worker.helpers import wait_for

MakeRelay = Callable[..., Relay]


def test_priorities_retries_delays_and_requeue(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay(retries=1)
    order: list[str] = []

    @relay.consumer("prio", concurrency=1)
    def handle(message: Message) -> None:
        order.append(message.body)
        if message.body == "flaky" and message.attempt == 1:
            raise RuntimeError("once")

    q = relay.queue("prio")
    q.put_many(["a", "b"])
    q.put_many(["low"], priority=-1)
    q.put("flaky", priority=50)
    q.put("later", priority=5, delay=0.2)
    q.put("dedup", priority=7, dedup_key="k")
    relay.drain(timeout=20, raise_on_failure=False)
    assert sorted(order) == sorted(
        ["a", "b", "low", "flaky", "flaky", "later", "dedup"]
    )
    first_runs = [body for body in dict.fromkeys(order) if body != "later"]
    assert first_runs == ["flaky", "dedup", "a", "b", "low"]
    stats = q.stats()
    assert (stats.ready, stats.prioritized, stats.in_flight) == (0, 0, 0)


def test_sharded_queue_priorities_per_shard(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    seen: list[str] = []

    @relay.consumer("sharded-prio", shards=3)
    def handle(message: Message) -> None:
        seen.append(message.body)

    q = relay.queue("sharded-prio", shards=3)
    q.put_many([f"n{i}" for i in range(30)])
    q.put_many([f"p{i}" for i in range(9)], priority=3)
    assert q.stats().prioritized == 9
    relay.drain(timeout=20)
    assert sorted(seen) == sorted(
        [f"n{i}" for i in range(30)] + [f"p{i}" for i in range(9)]
    )


def test_rate_concurrency_and_key_limits(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    lock = threading.Lock()
    running = most = 0
    tenants: dict[str, int] = {}

    @relay.consumer("capped", concurrency=4, concurrency_limit=2, rate_limit="500/s")
    def capped(message: Message) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        with lock:
            running -= 1

    @relay.consumer("keyed", limit_key="tenant", key_rate_limit="2/s")
    def keyed(message: Message) -> None:
        with lock:
            tenant = message.headers["tenant"]
            tenants[tenant] = tenants.get(tenant, 0) + 1

    relay.queue("capped").put_many(range(100))
    relay.queue("keyed").put_many(range(50), headers={"tenant": "hot"})
    for n in range(20):
        relay.queue("keyed").put(n, headers={"tenant": f"cold{n}"})
    runner = Runner(relay, subscribers=False, poll=0.05)
    runner.start()
    try:
        wait_for(
            lambda: (
                relay.queue("capped").stats().counters.get("acked") == 100
                and len(tenants) == 21
            ),
            timeout=30,
            what="capped drained and every tenant served",
        )
        keyed_stats = relay.queue("keyed").stats()
    finally:
        runner.stop()
    assert most <= 2
    assert keyed_stats.parked > 0 and keyed_stats.parked_keys == ["hot"]
