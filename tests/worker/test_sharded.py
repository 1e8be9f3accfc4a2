"""The consumer of a sharded queue, driven step by step on a real server."""

from __future__ import annotations

from collections import Counter

from redrelay import Relay
from redrelay.config import ConsumerOptions
from redrelay.worker.leases import Batch
from redrelay.worker.sharded import ShardedLease, new_lease


def _lease(relay: Relay, shards: int) -> ShardedLease:
    queue = relay.queue("s", shards=shards)
    lease = new_lease(relay.connection, queue, ConsumerOptions.build(prefetch=10))
    assert isinstance(lease, ShardedLease)
    lease.join()
    return lease


def test_a_hot_sharded_queue_starves_no_shard(relay: Relay) -> None:
    lease = _lease(relay, 4)
    relay.queue("s").put_many(range(4000))  # 1000 per shard: never empty here
    taken: Counter[int] = Counter()
    streaks = []
    acks: list[str] = []
    for _ in range(64):
        held, batch = lease.fetch(10, acks)
        assert held == len(acks)  # every ack was applied, on its own shard
        assert isinstance(batch, Batch) and len(batch.tags) == 10
        if streaks and streaks[-1][0] == batch.shard:
            streaks[-1][1] += 1
        else:
            streaks.append([batch.shard, 1])
        taken[batch.shard] += 1
        acks = batch.tags
    assert set(taken) == {0, 1, 2, 3}  # every shard served
    assert max(n for _, n in streaks) <= ShardedLease.STICK + 1
    assert relay.queue("s").stats().counters["acked"] == 630


def test_an_empty_shard_is_skipped_and_tags_route_to_their_shard(relay: Relay) -> None:
    lease = _lease(relay, 3)
    q = relay.queue("s")
    third = q.shard_keys()[2]
    relay.connection.call("LPUSH", third.ready, "raw-1", "raw-2")
    held, batch = lease.fetch(10)
    assert isinstance(batch, Batch) and batch.shard == 2 and len(batch.tags) == 2
    assert lease.current(batch)
    assert lease.release(batch.tags[1:]) == 1
    assert lease.ack(batch.tags[:1]) == 1
    held, empty = lease.fetch(10)
    assert isinstance(empty, Batch) and empty.shard == 2
    lease.ack(empty.tags)
    assert lease.fetch(10) == (0, -1.0)  # every shard empty, nothing delayed
    assert lease.leave() == 0


def test_after_a_wait_the_next_fetch_starts_on_the_shard_waited_on(
    relay: Relay,
) -> None:
    lease = _lease(relay, 4)
    keys = relay.queue("s").shard_keys()
    for _ in range(4):
        lease.wait(0.02)
        waited = lease._streak.waited
        others = [k for i, k in enumerate(keys) if i != waited]
        relay.connection.call("LPUSH", others[0].ready, "elsewhere")
        relay.connection.call("LPUSH", keys[waited].ready, "here")
        _, batch = lease.fetch(1)
        assert isinstance(batch, Batch) and batch.shard == waited
        lease.ack(batch.tags)
        _, batch = lease.fetch(1)  # then the other one, wherever it is
        assert isinstance(batch, Batch)
        lease.ack(batch.tags)
