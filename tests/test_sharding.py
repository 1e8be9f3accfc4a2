"""Sharded queues on a single server (the same code as on a cluster, see tests/cluster)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from redrelay import ConfigurationError, Message, Relay
from redrelay.sharding import ShardPicker, validate_shards
from redrelay.worker.runner import Runner


def test_shard_picker_is_round_robin_and_stable_by_key() -> None:
    picker = ShardPicker(4)
    assert [picker.next() for _ in range(6)] == [0, 1, 2, 3, 0, 1]
    assert picker.by_key("welcome:ada") == ShardPicker(4).by_key("welcome:ada")
    assert picker.spread(5) == [[2], [3], [0, 4], [1]]  # from the next turn (2)
    with pytest.raises(ConfigurationError, match="shards= must be an int from 1"):
        validate_shards(True)


def test_every_shard_is_consumed_and_each_message_once(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(concurrency=3, prefetch=5)
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    @relay.consumer("s", shards=5)
    def handle(message: Message) -> None:
        with lock:
            seen[message.body] += 1

    q = relay.queue("s")
    q.put_many(range(300))
    for i in range(300, 350):
        q.put(i)
    assert [relay.connection.call("LLEN", k.ready) for k in q.shard_keys()] == [70] * 5
    relay.drain(timeout=20)
    assert len(seen) == 350 and set(seen.values()) == {1}
    assert q.stats().counters["acked"] == 350


def test_a_worker_with_another_shard_count_refuses_to_start(
    make_relay: Callable[..., Relay],
) -> None:
    producer = make_relay()
    producer.queue("jobs", shards=3).put(1)
    worker = make_relay(namespace=producer.namespace)
    worker.consumer("jobs", shards=2)(lambda m: None)
    with pytest.raises(ConfigurationError, match=r"has 3 shard\(s\).*shards=2"):
        Runner(worker).start()


def _multis(relay: Relay) -> int:
    stats = relay.connection.call("INFO", "commandstats")
    return int(stats.get("cmdstat_multi", {}).get("calls", 0))


def test_a_sharded_put_many_is_one_transaction_on_one_server(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay()
    q = relay.queue("many", shards=4)
    q.put(0)  # registers the queue first
    before = _multis(relay)
    q.put_many(range(1, 9))
    assert _multis(relay) == before + 1
    assert [relay.connection.call("LLEN", k.ready) for k in q.shard_keys()] == [
        3,
        2,
        2,
        2,
    ]
