"""``async def`` consumers fed ahead of free permits (worker/aiobatch.py, aioloop.Bounded):
nothing fed is lost or held back, limits and order rules still hold."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import redis

from redrelay import Message, Relay

from .helpers import wait_for

_current: contextvars.ContextVar[object] = contextvars.ContextVar("current")


def test_graceful_stop_gives_back_what_was_fed_and_not_started(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(40)))
    started: list[int] = []
    release = threading.Event()

    @relay.consumer("q", concurrency=4, prefetch=10)
    async def handler(message: Message) -> None:
        started.append(message.body)
        while not release.is_set():
            await asyncio.sleep(0.01)

    relay.start()
    try:
        wait_for(lambda: len(started) == 4, what="four coroutines running")
        # The threads have fed batches beyond the 4 permits: they wait in the slots.
        wait_for(lambda: q.stats().in_flight > 4, what="batches fed ahead")
        threading.Timer(0.3, release.set).start()
    finally:
        relay.stop(grace=10)
    stats = q.stats()
    assert len(started) == 4  # the unstarted ones never ran
    assert (stats.in_flight, stats.ready) == (0, 36)  # given back at once, not leased
    assert stats.counters.get("acked") == 4
    back = q.peek(36)
    assert {m.body for m in back} == set(range(40)) - set(started)
    assert {m.attempt for m in back} == {1}  # given back unchanged


def test_fed_coroutines_respect_concurrency_limits_retries_and_time_limits(
    relay: Relay,
) -> None:
    q = relay.queue("q")
    q.put_many(list(range(60)))
    attempts: dict[int, list[int]] = {}
    running, peak = 0, 0

    @relay.consumer("q", concurrency=5, prefetch=7, retries=1, backoff=0, time_limit=1)
    async def handler(message: Message) -> None:
        nonlocal running, peak
        attempts.setdefault(message.body, []).append(message.attempt)
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.005)
            if message.body % 10 == 3 and message.attempt == 1:
                raise ValueError("first attempt fails")  # a redelivery follows
            if message.body == 59:
                await asyncio.sleep(30)  # past the time limit, twice: dead
        finally:
            running -= 1

    relay.drain(timeout=60, raise_on_failure=False)
    assert peak == 5
    assert sorted(attempts) == list(range(60))
    for body, seen in attempts.items():
        expected = [1, 2] if body % 10 == 3 or body == 59 else [1]
        assert seen == expected, body
    stats = q.stats()
    assert (stats.ready, stats.in_flight) == (0, 0)
    assert stats.counters.get("acked") == 59
    (dead,) = q.dead_letters()
    assert "time limit" in dead.reason


def test_coroutines_running_at_once_keep_their_own_context(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(50)))
    mixed: list[tuple[int, object]] = []
    handled = 0

    @relay.consumer("q", concurrency=10)
    async def handler(message: Message) -> None:
        nonlocal handled
        _current.set(message.body)
        await asyncio.sleep(0.01)  # the others run meanwhile
        if _current.get() != message.body:
            mixed.append((message.body, _current.get()))
        handled += 1

    relay.drain(timeout=30)
    assert handled == 50
    assert mixed == []


def test_slow_coroutines_get_no_second_batch(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(15)))
    in_flight: list[int] = []

    @relay.consumer("q", prefetch=5)
    async def handler(message: Message) -> None:
        in_flight.append((await q.astats()).in_flight)
        await asyncio.sleep(0.1)  # a batch takes far longer than 50 ms

    relay.drain(timeout=60)
    assert len(in_flight) == 15
    # One batch, and the next one only once the last of it started (as for threads:
    # no batch waits behind slow handlers).
    assert max(in_flight) <= 5 + 1
    assert q.stats().counters.get("acked") == 15


def test_first_deliveries_without_begin_fail_retry_and_take_raw_entries(
    relay: Relay,
) -> None:
    q = relay.queue("q")
    q.put_many(list(range(20)))
    with redis.Redis.from_url(relay.connection.url) as client:
        client.lpush(q.keys.ready, b"plain bytes")  # a non-redrelay producer
    seen: list[tuple[Any, int, bool]] = []

    @relay.consumer("q", retries=1, backoff=0)  # no time limit, no handler contexts
    async def handler(message: Message) -> None:
        seen.append((message.body, message.attempt, message.raw))
        if message.body == 7 and message.attempt == 1:
            raise ValueError("once")
        if message.body == 9:
            raise ValueError("always")

    relay.drain(timeout=30, raise_on_failure=False)
    once = sorted(b for b, _, raw in seen if not raw and b not in (7, 9))
    assert once == [b for b in range(20) if b not in (7, 9)]
    assert [(b, a) for b, a, _ in seen if b == 7] == [(7, 1), (7, 2)]
    assert [(b, a) for b, a, _ in seen if b == 9] == [(9, 1), (9, 2)]
    assert (b"plain bytes", 1, True) in seen
    stats = q.stats()
    assert (stats.ready, stats.in_flight) == (0, 0)
    assert stats.counters.get("acked") == 20
    (dead,) = q.dead_letters()
    assert "ValueError: always" in dead.reason
