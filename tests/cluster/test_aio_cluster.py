"""The asyncio API on a real 3-node Redis Cluster: what works on Cluster through the sync
calls works through their ``a`` twins (redis.asyncio.cluster.RedisCluster underneath)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from redrelay import BrokerUnavailable, ConfigurationError, Message, Relay
from redrelay._cluster import LocalCluster
from redrelay._server import AdminClient
from redrelay.io.aio import AsyncConnection
from redrelay.listener import Listener

from ..processes import wait_for
from .conftest import needs_async_cluster

pytestmark = needs_async_cluster

MakeRelay = Callable[..., Relay]


def node_of(relay: Relay, key: str) -> str:
    return str(relay.connection.client.get_node_from_key(key).name)  # type: ignore[attr-defined]


def test_aput_aput_many_astats_on_queues_of_every_node(
    make_cluster_relay: MakeRelay,
) -> None:
    relay = make_cluster_relay()
    # Queues whose hash tags live on every node: the async client routes each one.
    names = [f"q{i}" for i in range(30)]
    by_node = {node_of(relay, relay.queue(n).keys.ready): n for n in names}
    assert len(by_node) == 3
    queues = sorted(by_node.values())

    async def main() -> list[tuple[int, int]]:
        for name in queues:
            q = relay.queue(name)
            await q.aput({"q": name, "n": 0})
            await q.aput_many([{"q": name, "n": i} for i in range(1, 5)])
            await q.aput({"q": name, "n": 99}, delay=60)
            first = await q.aput({"q": name}, dedup_key="k")
            assert await q.aput({"q": name, "other": 1}, dedup_key="k") == first
        stats = await relay.astats(queues)
        await relay.aconnection.close()
        return [(s.ready, s.delayed) for s in stats]

    assert asyncio.run(main()) == [(6, 1)] * 3
    for name in queues:  # the sync side reads what the async side wrote
        assert [m.body["n"] for m in relay.queue(name).peek(5)] == [0, 1, 2, 3, 4]  # type: ignore[index]


def test_sharded_aput_many_and_an_async_consumer_drain_exactly_once(
    make_cluster_relay: MakeRelay,
) -> None:
    relay = make_cluster_relay(prefetch=20)
    done: Counter[int] = Counter()

    @relay.consumer("hot", shards=4, concurrency=8)
    async def handle(message: Message) -> None:
        await asyncio.sleep(0)
        done[message.body] += 1

    hot = relay.queue("hot")
    assert len({node_of(relay, k.ready) for k in hot.shard_keys(register=True)}) >= 2

    async def produce() -> None:
        for i in range(100):
            await hot.aput(i)
        await hot.aput_many(range(100, 400))
        await relay.consumers["hot"].aput(400)
        assert (await hot.astats()).ready == 401

    asyncio.run(produce())
    relay.drain(timeout=30)
    assert len(done) == 401 and set(done.values()) == {1}
    stats = hot.stats()
    assert (stats.ready, stats.in_flight, stats.counters["acked"]) == (0, 0, 401)


def test_apublish_on_channels_and_topics(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    heard: list[Any] = []
    relay.subscriber("news")(lambda m: heard.append(m.body))
    seen: list[Any] = []

    @relay.subscriber("orders", group="billing", start="beginning")
    def bill(message: Message) -> None:
        seen.append(message.body)

    async def main() -> list[str]:
        for n in range(3):  # the count is of the node that took it: 0 or 1 here
            assert await relay.apublish("news", {"n": n}) in (0, 1)
        topic = relay.topic("orders")
        first = await topic.apublish({"n": 0})
        rest = await topic.apublish_many([{"n": n} for n in range(1, 5)])
        return [first, *rest]

    with Listener(relay, relay.subscribers) as listener:
        assert listener.connected.wait(10)
        ids = asyncio.run(main())
        wait_for(lambda: len(heard) == 3, timeout=10, what="three messages")
    assert heard == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len(set(ids)) == 5
    relay.drain(timeout=20)
    assert seen == [{"n": n} for n in range(5)]


def test_results_wait_status_and_cancel(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()

    @relay.consumer("reports", result_ttl=60)
    def render(message: Message) -> dict[str, int]:
        return {"double": message.body * 2}

    reports = relay.queue("reports")

    async def enqueue() -> tuple[str, str, bool]:
        first = await reports.aput(21)
        second = await reports.aput(1)
        assert await reports.astatus(first) == "queued"
        return first, second, await reports.acancel(second)

    first, second, cancelled = asyncio.run(enqueue())
    assert cancelled
    worker = threading.Thread(target=lambda: relay.drain(timeout=20))
    worker.start()

    async def wait() -> Any:
        return await reports.aresult(first, timeout=20)

    try:
        assert asyncio.run(wait()) == {"double": 42}
    finally:
        worker.join(30)

    async def states() -> tuple[str, str]:
        return (
            await reports.astatus(first),
            await reports.astatus(second),
        )

    assert asyncio.run(states()) == ("succeeded", "cancelled")


def test_connection_calls_on_a_cluster(cluster: Any) -> None:
    """The node-level calls: HELLO and CONFIG GET of every primary, TIME of a key's node,
    a keyless transaction refused with a clear error, a dead cluster translated."""
    conn = AsyncConnection(cluster.url)
    assert conn.is_cluster

    async def main() -> tuple[Any, ...]:
        version = await conn.server_version()
        policy = await conn.config_get("maxmemory-policy")
        now = await conn.time_ms("redrelay:{x}:ready")
        replies = await conn.pipeline(
            [("SET", "k:{t}", "1"), ("GET", "k:{t}"), ("DEL", "k:{t}")]
        )
        spread = await conn.pipeline(
            [("SET", f"k{i}", i) for i in range(6)]
            + [("DEL", f"k{i}") for i in range(6)],
            transaction=False,
        )
        await conn.close()
        return version, policy, now, replies, spread

    version, policy, now, replies, spread = asyncio.run(main())
    assert version >= (6,) and policy == "noeviction" and now > 0
    assert replies == [True, b"1", 1]
    assert spread == [True] * 6 + [1] * 6


def test_errors_name_the_url_and_the_fix() -> None:
    down = AsyncConnection("redis+cluster://127.0.0.1:1,127.0.0.1:2", retries=0)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"):
        asyncio.run(down.call("GET", "k"))

    async def bad_url() -> None:
        AsyncConnection("redis+cluster://nohost", retries=0).client  # noqa: B018

    with pytest.raises(ConfigurationError, match="host:port"):
        asyncio.run(bad_url())


def test_async_schedules_calls(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    relay.queue("reports", shards=3)
    relay.schedule("nightly", "0 3 * * *", queue="reports")

    async def main() -> tuple[str | None, list[Any], bool]:
        # registered as a worker's scheduler does it, through the async driver
        schedules, drive = relay.schedules, relay.aconnection.drive
        spec = schedules.get("nightly")
        assert spec is not None
        await drive(
            schedules.register_plan(spec, await drive(schedules.where_plan(spec)))
        )
        msg_id = await relay.schedules.atrigger("nightly")
        await relay.schedules.apause("nightly")
        paused = [i.paused for i in await relay.schedules.ainfo()]
        await relay.schedules.aresume("nightly")
        infos = await relay.schedules.ainfo()
        assert paused == [True] and [i.paused for i in infos] == [False]
        removed = await relay.schedules.aremove("nightly")
        return msg_id, infos, removed

    msg_id, infos, removed = asyncio.run(main())
    assert [i.name for i in infos] == ["nightly"] and removed
    (message,) = relay.queue("reports").peek(5)
    assert message.id == msg_id


def test_an_async_subscriber_in_the_worker(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    got: list[Any] = []

    @relay.subscriber("chat", concurrency=3)
    async def on_chat(message: Message) -> None:
        await asyncio.sleep(0)
        got.append(message.body)

    relay.start()
    try:
        assert relay.wait_ready(10)

        async def main() -> None:
            for i in range(3):
                await relay.apublish("chat", i)

        asyncio.run(main())
        wait_for(lambda: len(got) == 3, timeout=10, what="three messages")
    finally:
        relay.stop()
    assert sorted(got) == [0, 1, 2]


def test_a_topic_event_stream_over_asgi_code(make_cluster_relay: MakeRelay) -> None:
    """contrib.asgi's topic stream (its own AsyncConnection, blocked in XREAD) on a
    cluster: the frames of what was published, in order."""
    from redrelay.contrib.asgi import topic_events

    relay = make_cluster_relay()
    ids = [relay.topic("orders").publish({"n": n}) for n in range(3)]

    async def read() -> list[str]:
        frames = topic_events(relay, "orders", start="beginning", keepalive=5)
        got: list[str] = []
        try:
            async for frame in frames:  # one chunk may carry several events
                got += re.findall(r"^id: (\S+)$", frame.decode(), re.MULTILINE)
                if len(got) >= 3:
                    break
        finally:
            await frames.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(asyncio.wait_for(read(), 20)) == ids


def test_more_concurrent_calls_than_connections_per_node(
    make_cluster_relay: MakeRelay, cluster: LocalCluster
) -> None:
    """As on a single server: a burst beyond a node's connection limit waits its turn
    (redrelay bounds a loop's concurrent cluster commands), none fails, even while the
    node is slow (its writes paused for a second: the cluster client alone would give
    up on the commands past its 100 connections after a few quick retries)."""
    from redrelay.io.aio import MAX_CONNECTIONS

    relay = make_cluster_relay()
    q = relay.queue("burst")
    n = MAX_CONNECTIONS * 3

    async def main() -> list[str]:
        await q.aput(-1)  # connected
        node = cluster.primary_of(q.keys.ready)
        with AdminClient(node.url) as admin:
            admin.command("CLIENT", "PAUSE", 1000, "WRITE")
        ids = await asyncio.gather(*(q.aput(i) for i in range(n)))
        assert (await q.astats()).ready == n + 1
        await relay.aconnection.close()
        return list(ids)

    assert len(set(asyncio.run(main()))) == n
