"""``async def`` consumers with ``concurrency=1``: a batch runs as one chain on the loop."""

from __future__ import annotations

import asyncio

from redrelay import Message, Relay


def test_a_chain_keeps_order_and_settles_each_outcome(relay: Relay) -> None:
    seen: list[str] = []

    @relay.consumer("q", retries=0, time_limit=0.2)
    async def handle(message: Message) -> None:
        seen.append(message.body)
        if message.body == "boom":
            raise ValueError("boom")
        if message.body == "slow":
            await asyncio.sleep(5)
        if message.body == "cancel":
            raise asyncio.CancelledError

    bodies = ["a", "boom", "b", "slow", "c", "cancel", "d"]
    relay.queue("q").put_many(bodies)
    relay.drain(timeout=20, raise_on_failure=False)
    assert seen == bodies
    stats = relay.queue("q").stats()
    assert (stats.ready, stats.in_flight) == (0, 0)
    assert stats.counters["acked"] == 4
    reasons = sorted(d.reason for d in relay.queue("q").dead_letters())
    assert len(reasons) == 3
    assert any("ValueError: boom" in r for r in reasons)
    assert any("time limit" in r for r in reasons)
    assert any("CancelledError" in r for r in reasons)


def test_many_quick_coroutines_drain(relay: Relay) -> None:
    count = 0

    @relay.consumer("q")
    async def handle(message: Message) -> None:
        nonlocal count
        count += 1

    relay.queue("q").put_many(range(2000))
    relay.drain(timeout=30)
    assert count == 2000
    assert relay.queue("q").stats().counters["acked"] == 2000
