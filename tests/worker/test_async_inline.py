"""``async def`` consumers at default settings: plain deliveries run inline, a run of a
batch per coroutine (worker/aioinline.py); every way an entry or a handler ends still
does what the general path does, acks go out while a run goes on, stop gives back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from redrelay import Message, Relay, Retry

from .helpers import wait_for


def test_every_kind_of_entry_and_ending_in_one_batch(relay: Relay) -> None:
    seen: list[tuple[Any, int, bool, dict[str, str]]] = []

    @relay.consumer("jobs", prefetch=50, retries=1, backoff=0)
    async def handler(message: Message) -> None:
        seen.append((message.body, message.attempt, message.raw, message.headers))
        first = message.attempt == 1
        if message.body == "flaky" and first:
            raise ValueError("first time")
        if message.body == "later" and first:
            raise Retry(delay=0.5)
        if message.body == "cancels":
            raise asyncio.CancelledError  # the handler's own: a failure
        if message.body == "exits":
            raise SystemExit(3)  # any BaseException: a failure
        if message.body == "sleeps":
            await asyncio.sleep(0.01)  # suspends inside the run

    q = relay.queue("jobs")
    q.put_many(["a", "flaky", "b"])
    q.put("headed", headers={"corr": "42"})
    q.put_many(["later", "cancels", "sleeps", "exits"])
    q.put_many(["p1", "p2"], priority=5)  # marked entries
    ready = q.keys.ready
    relay.connection.call("LPUSH", ready, b"from redis-cli")  # a raw entry
    relay.connection.call("LPUSH", ready, b"\x1frr1:0:0:jnot json")  # malformed
    bad = b"\x1frr1:0:0:j" + orjson.dumps({"i": 7, "b": 1})  # an id that is no str
    relay.connection.call("LPUSH", ready, bad)
    q.put_many(["c", "d"])
    relay.drain(timeout=30, raise_on_failure=False)
    firsts = [body for body, attempt, _, _ in seen if attempt == 1]
    plain = ["a", "flaky", "b", "headed", "later", "cancels", "sleeps", "exits"]
    assert [b for b in firsts if b in plain] == plain  # in order, once each
    assert ("headed", 1, False, {"corr": "42"}) in seen
    assert (b"from redis-cli", 1, True, {}) in seen
    assert {"p1", "p2", "c", "d"} <= set(firsts)
    again = sorted(body for body, attempt, _, _ in seen if attempt == 2)
    assert again == ["cancels", "exits", "flaky", "later"]
    assert len(seen) == 13 + 4  # the malformed entries never reached the handler
    reasons = sorted(d.reason for d in q.dead_letters())
    assert len(reasons) == 4
    assert sum("malformed entry" in r for r in reasons) == 2
    assert any("CancelledError" in r for r in reasons)
    assert any("SystemExit" in r for r in reasons)
    stats = q.stats()
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)
    assert stats.counters["acked"] == 11


def test_acks_go_out_while_a_run_still_runs(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(10)))
    release = threading.Event()

    @relay.consumer("q", prefetch=10)
    async def handler(message: Message) -> None:
        while message.body == 3 and not release.is_set():
            await asyncio.sleep(0.01)

    relay.start()
    try:
        # The run of ten waits on its fourth: the three before it are acked meanwhile.
        wait_for(lambda: q.stats().counters.get("acked") == 3, what="three acks")
        assert q.stats().in_flight == 7
    finally:
        release.set()
        relay.stop(grace=10)
    stats = q.stats()  # the fourth ended; stop() gave back the six not started
    assert (stats.ready, stats.in_flight, stats.counters.get("acked")) == (6, 0, 4)


def test_stop_gives_back_what_a_run_has_not_started(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(30)))
    started: list[int] = []
    release = threading.Event()

    @relay.consumer("q", prefetch=10)
    async def handler(message: Message) -> None:
        started.append(message.body)
        while not release.is_set():
            await asyncio.sleep(0.01)

    relay.start()
    try:
        wait_for(lambda: len(started) == 1, what="the first handler running")
        wait_for(lambda: q.stats().in_flight == 10, what="a batch of ten in flight")
        threading.Timer(0.3, release.set).start()
    finally:
        relay.stop(grace=10)
    stats = q.stats()
    assert len(started) == 1  # the rest of the run never started
    assert (stats.in_flight, stats.ready) == (0, 29)  # given back at once, not leased
    assert stats.counters.get("acked") == 1
    back = q.peek(29)
    assert {m.body for m in back} == set(range(30)) - set(started)
    assert {m.attempt for m in back} == {1}  # given back unchanged


def test_many_runs_drain_in_order(relay: Relay) -> None:
    seen: list[int] = []

    @relay.consumer("q")
    async def handler(message: Message) -> None:
        seen.append(message.body)

    relay.queue("q").put_many(range(3000))
    relay.drain(timeout=60)
    assert seen == list(range(3000))
    assert relay.queue("q").stats().counters["acked"] == 3000
