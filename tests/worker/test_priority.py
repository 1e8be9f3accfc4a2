"""Priorities: strict order, FIFO within a priority, kept through delay, retry, recovery."""

from __future__ import annotations

import asyncio
import random

import pytest

from redrelay import ConfigurationError, Message, Relay
from redrelay.protocol.envelope import decode_entry, rewrite_header
from redrelay.worker.leases import Batch, Lease, recover_expired

from .helpers import joined_lease as _lease
from .helpers import queued_body as _body
from .helpers import wait_for


def _fetch_all(lease: Lease, count: int = 200) -> list[object]:
    bodies: list[object] = []
    acks: list[str] = []
    while True:
        _, batch = lease.fetch(count, acks)
        if not isinstance(batch, Batch):
            return bodies
        bodies += [_body(e) for e in batch.entries]
        acks = batch.tags


def test_random_priorities_come_out_by_priority_then_fifo(relay: Relay) -> None:
    rng = random.Random(15)
    q = relay.queue("q")
    prio = [rng.choice([0, 0, 0, rng.randint(-100, 100)]) for _ in range(10_000)]
    for i, p in enumerate(prio):  # one put at a time, priorities interleaved
        q.put(i, priority=p)
    stats = q.stats()
    assert stats.ready == 10_000
    assert stats.prioritized == sum(1 for p in prio if p)
    got = _fetch_all(_lease(relay))
    assert got == sorted(range(10_000), key=lambda i: (-prio[i], i))


def test_put_many_with_priority_and_the_zero_fast_path(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(["a1", "a2"])
    q.put_many(["low1", "low2"], priority=-3)
    q.put_many(["high1", "high2"], priority=7)
    q.put("top", priority=100)
    # priority 0 is the plain list, as before: a bare LPUSH, nothing else
    assert relay.connection.call("LLEN", q.keys.ready) == 2
    assert _fetch_all(_lease(relay), count=3) == [
        "top", "high1", "high2", "a1", "a2", "low1", "low2"
    ]  # fmt: skip


def test_one_urgent_message_overtakes_a_large_backlog(relay: Relay) -> None:
    q = relay.queue("q")
    for start in range(0, 100_000, 10_000):
        q.put_many(range(start, start + 10_000))
    q.put("urgent", priority=100)
    lease = _lease(relay)
    _, batch = lease.fetch(1)
    assert isinstance(batch, Batch)
    assert [_body(e) for e in batch.entries] == ["urgent"]
    _, batch = lease.fetch(2, batch.tags)
    assert isinstance(batch, Batch)
    assert [_body(e) for e in batch.entries] == [0, 1]


def test_delayed_message_comes_back_at_its_priority(relay: Relay) -> None:
    q = relay.queue("q")
    q.put("later", priority=5, delay=0.05)
    q.put_many(["a", "b", "c"])
    wait_for(lambda: relay.connection.call("ZRANGEBYSCORE", q.keys.delayed, "-inf",
                                           relay.connection.time_ms(q.keys.delayed)))  # fmt: skip
    assert _fetch_all(_lease(relay)) == ["later", "a", "b", "c"]


def test_retried_released_and_recovered_keep_their_priority(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(["a", "b"])
    q.put("p", priority=9)
    first = _lease(relay)
    _, batch = first.fetch(1)
    assert isinstance(batch, Batch) and _body(batch.entries[0]) == "p"
    # a retry without delay goes to the back of priority 9: still before priority 0
    entry = rewrite_header(batch.entries[0], 1, 1)
    assert first.retry(batch.tags[0], entry, 0, "id")
    _, batch = first.fetch(1)
    assert isinstance(batch, Batch) and _body(batch.entries[0]) == "p"
    assert decode_entry(batch.entries[0]).failures == 1
    # given back unstarted: to the front of its priority
    assert first.release(batch.tags) == 1
    _, batch = first.fetch(1)
    assert isinstance(batch, Batch) and _body(batch.entries[0]) == "p"
    # its consumer dies: recovered to its priority, with the delivery counted
    relay.connection.call("ZADD", first.keys.leases, 0, first.consumer_id)
    assert recover_expired(relay.connection, q.keys) == 1
    second = _lease(relay)
    _, batch = second.fetch(3)
    assert isinstance(batch, Batch)
    assert [_body(e) for e in batch.entries] == ["p", "a", "b"]
    assert decode_entry(batch.entries[0]).failures == 1  # the same entry, header kept


def test_dead_letter_requeued_at_its_priority(relay: Relay) -> None:
    q = relay.queue("q")
    seen: list[object] = []

    @relay.consumer("q", retries=0)
    def handle(message: Message) -> None:
        seen.append(message.body)
        if message.body == "bad" and len(seen) == 1:
            raise ValueError("once")

    q.put("bad", priority=3)
    relay.drain(timeout=10, raise_on_failure=False)
    assert q.stats().dead == 1
    q.put_many(["x", "y"])
    assert q.requeue_dead() == 1
    assert q.stats().prioritized == 1
    relay.drain(timeout=10)
    assert seen == ["bad", "bad", "x", "y"]


@pytest.mark.parametrize("bad", [101, -101, 1.5, "1", True, None])
def test_bad_priority_is_refused_and_nothing_written(relay: Relay, bad: object) -> None:
    q = relay.queue("q")
    with pytest.raises(
        ConfigurationError, match=r"priority= must be an int from -100 to 100"
    ):
        q.put("x", priority=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="priority="):
        q.put_many(["x"], priority=bad)  # type: ignore[arg-type]
    assert q.stats().ready == 0


def test_aput_with_priority(relay: Relay) -> None:
    q = relay.queue("q")

    async def produce() -> None:
        await q.aput("a")
        await q.aput("b", priority=1)
        await q.aput_many(["c"], priority=2)

    asyncio.run(produce())
    assert _fetch_all(_lease(relay)) == ["c", "b", "a"]


def test_marked_entries_take_the_fast_decode(relay: Relay) -> None:
    from redrelay.protocol.envelope import fresh_envelope

    q = relay.queue("q")
    q.put({"x": 1}, priority=-7)
    (entry,) = relay.connection.call("ZRANGE", q.keys.prio, 0, -1)
    assert entry.startswith(b"\x1frr1:0:0:!-7:j")
    envelope = fresh_envelope(entry)
    assert envelope is not None and envelope["b"] == {"x": 1}
    assert decode_entry(entry).envelope == envelope
    assert fresh_envelope(b"\x1frr1:0:0:!x") is None  # malformed: left to decode_entry


def test_an_idle_worker_wakes_for_a_prioritized_put(relay: Relay) -> None:
    """A worker blocked on the empty ready list (here for up to 30 s) wakes at once for a
    message that goes to the priority set: a bell on the list wakes it, and is dropped."""
    from redrelay.worker.runner import Runner

    seen: list[str] = []

    @relay.consumer("q")
    def handle(message: Message) -> None:
        seen.append(message.body)

    q = relay.queue("q")
    q.put("first")
    runner = Runner(relay, subscribers=False, poll=30.0)
    runner.start()
    try:
        wait_for(lambda: seen == ["first"], what="the first message")
        wait_for(lambda: relay.connection.call("CLIENT", "LIST").count(b"cmd=blmove") > 0,
                 what="the worker blocked on the empty queue")  # fmt: skip
        q.put("urgent", priority=50)
        stats = q.stats()
        assert stats.ready <= 1 and stats.prioritized <= 1  # the bell is not a message
        wait_for(lambda: seen == ["first", "urgent"], timeout=10, what="woken")
        wait_for(lambda: q.stats().ready == 0, what="the bell dropped")
        assert relay.connection.call("LLEN", q.keys.ready) == 0
        wait_for(lambda: q.stats().counters.get("acked") == 2, what="both acked")
    finally:
        runner.request_stop()
        relay.connection.call("LPUSH", q.keys.ready, b"wake")  # ends its 30 s wait
        runner.stop()


def test_peek_shows_the_run_order(relay: Relay) -> None:
    q = relay.queue("q")
    q.put("low", priority=-1)
    q.put_many(["a", "b"])
    q.put("high", priority=3)
    assert [m.body for m in q.peek()] == ["high", "a", "b", "low"]
    assert [m.body for m in q.peek(2)] == ["high", "a"]
    assert _fetch_all(_lease(relay)) == ["high", "a", "b", "low"]


def test_priorities_on_a_queue_that_keeps_results(relay: Relay) -> None:
    """result_ttl= queues: prioritized puts get their records, run first, and a queued
    prioritized message can be cancelled."""
    order: list[str] = []

    @relay.consumer("q", result_ttl=60)
    def handle(message: Message) -> str:
        order.append(message.body)
        return message.body.upper()

    q = relay.queue("q")
    plain = q.put("plain")
    single = q.put("single", priority=5)
    many = q.put_many(["m1", "m2"], priority=7)
    dropped = q.put("dropped", priority=9)
    assert q.cancel(dropped) is True
    relay.drain(timeout=20)
    assert order == ["m1", "m2", "single", "plain"]
    assert [q.result(i, timeout=5) for i in (*many, single, plain)] == [
        "M1", "M2", "SINGLE", "PLAIN"
    ]  # fmt: skip
    assert q.stats().prioritized == 0
