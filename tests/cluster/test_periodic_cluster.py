"""Periodic jobs on the 3-primary Redis Cluster: schedules on several nodes, sharded target
queues, racing schedulers, no CROSSSLOT."""

from __future__ import annotations

import threading
from collections.abc import Callable

from redrelay import Message, Relay
from redrelay.worker.periodic import Scheduler

from ..processes import wait_for

MakeRelay = Callable[..., Relay]


def test_schedules_on_several_nodes_fire_once_each(
    make_cluster_relay: MakeRelay,
) -> None:
    relays = [make_cluster_relay() for _ in range(3)]
    for relay in relays:  # three "workers" declaring the same schedules
        relay.queue("sharded", shards=6)
        for n in range(6):
            relay.schedule(f"s{n}", "* * * * * *", queue=f"q{n}", misfire="all")
        relay.schedule("to-shards", "* * * * * *", queue="sharded", misfire="all")
    first = relays[0]
    nodes = {
        first.connection.client.get_node_from_key(  # type: ignore[attr-defined]
            f"{first.namespace}:{{q{n}}}:ready"
        ).name
        for n in range(6)
    }
    assert len(nodes) >= 2  # the schedules really live on several nodes
    schedulers = [Scheduler(r) for r in relays]
    for s in schedulers:
        s.start()
    try:
        wait_for(
            lambda: all(i.fired >= 4 for i in first.schedules.info()),
            timeout=30,
            what="four ticks of every schedule",
        )
    finally:
        for s in schedulers:
            s.stop()
    for info in first.schedules.info():
        queue = info.queue
        ticks = [m.headers["scheduled_for"] for m in first.queue(queue).peek(10_000)]
        if queue == "sharded":
            ticks.sort()
        assert len(ticks) == len(set(ticks)) == info.fired, info


def test_periodic_handler_runs_on_a_cluster(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    seen: list[str] = []
    done = threading.Event()

    @relay.periodic(every=1, name="heartbeat")
    def beat(message: Message) -> None:
        seen.append(message.headers["scheduled_for"])
        if len(seen) >= 2:
            done.set()

    relay.start()
    try:
        assert done.wait(20)
    finally:
        relay.stop()
    assert len(seen) == len(set(seen))
