"""The consumer loop's fast path (worker/fastpath.py): who takes it, and that every kind of
entry and every way a handler ends still does what the general path does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from redrelay import Message, Relay, Retry
from redrelay.worker import fastpath
from redrelay.worker.leases import Lease
from redrelay.worker.runner import Runner


def _eligible(relay: Relay, name: str = "jobs", **options: Any) -> bool:
    def handler(message: Message) -> None:
        return None

    relay.consumer(name, **options)(handler)
    consumer = relay.consumers[name]
    lease = Lease(relay.connection, relay.queue(name).keys, consumer.options)
    if options.get("result_ttl") is not None:
        lease.tracker = object()  # type: ignore[assignment] # as track() sets it
    return fastpath.eligible(Runner(relay, subscribers=False), consumer, lease)


def test_plain_consumers_take_it_others_do_not(relay: Relay) -> None:
    assert _eligible(relay, "a")
    assert _eligible(relay, "b", prefetch=10, concurrency=3, retries=1)
    assert _eligible(
        relay, "c", result_ttl=60
    )  # results ride along (worker/results.py)
    assert not _eligible(
        relay, "d", time_limit=5
    )  # the watchdog needs the general path


def test_async_and_signed_consumers_do_not(relay: Relay, make_relay: Any) -> None:
    async def handler(message: Message) -> None:
        return None

    relay.consumer("aio")(handler)
    consumer = relay.consumers["aio"]
    lease = Lease(relay.connection, relay.queue("aio").keys, consumer.options)
    assert not fastpath.eligible(Runner(relay, subscribers=False), consumer, lease)
    signed = make_relay(signing_key="k" * 32)
    assert not _eligible(signed)


def test_every_kind_of_entry_in_one_batch(relay: Relay) -> None:
    seen: list[tuple[Any, int, bool, dict[str, str]]] = []

    def handler(message: Message) -> None:
        seen.append((message.body, message.attempt, message.raw, message.headers))
        if message.body == "flaky" and message.attempt == 1:
            raise ValueError("first time")
        if message.body == "later" and message.attempt == 1:
            raise Retry(delay=1)

    relay.consumer("jobs", prefetch=50, retries=2, backoff=0)(handler)
    q = relay.queue("jobs")
    q.put("plain")
    q.put("headed", headers={"corr": "42"})
    q.put("flaky")
    q.put("later")
    ready = q.keys.ready
    relay.connection.call("LPUSH", ready, b"from redis-cli")  # a raw entry
    relay.connection.call("LPUSH", ready, b"\x1frr1:0:0:jnot json")  # malformed
    bad = b"\x1frr1:0:0:j" + orjson.dumps({"i": 7, "b": 1})  # an id that is no str
    relay.connection.call("LPUSH", ready, bad)
    report = relay.drain(timeout=30, raise_on_failure=False)
    assert ("plain", 1, False, {}) in seen
    assert ("headed", 1, False, {"corr": "42"}) in seen
    assert ("flaky", 1, False, {}) in seen and ("flaky", 2, False, {}) in seen
    assert ("later", 1, False, {}) in seen and ("later", 2, False, {}) in seen
    assert (b"from redis-cli", 1, True, {}) in seen
    assert len(seen) == 7  # the two malformed entries never reached the handler
    dead = q.dead_letters()
    assert len(dead) == 2
    assert all("malformed entry" in d.reason for d in dead)
    stats = q.stats()
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 2)
    assert [f.where for f in report.failures].count("queue jobs") >= 1


def test_a_plain_function_returning_a_coroutine_runs_it(relay: Relay) -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    def handler(message: Message) -> Any:
        return work(message.body)

    relay.consumer("jobs")(handler)
    relay.queue("jobs").put_many([1, 2, 3])
    relay.drain(timeout=30)
    assert sorted(done) == [1, 2, 3]
    assert relay.queue("jobs").stats().in_flight == 0


def test_handler_contexts_nest_in_order_and_see_the_error(relay: Relay) -> None:
    events: list[str] = []

    def context(name: str) -> Any:
        @contextmanager
        def around(message: Message) -> Iterator[None]:
            events.append(f"enter {name} {message.body}")
            try:
                yield
            except ValueError:
                events.append(f"error {name}")
                raise
            finally:
                events.append(f"exit {name}")

        return around

    relay.add_handler_context(context("outer"))
    relay.add_handler_context(context("inner"))

    def handler(message: Message) -> None:
        events.append(f"run {message.body}")
        if message.body == "bad":
            raise ValueError("no")

    relay.consumer("jobs", retries=0)(handler)
    relay.queue("jobs").put("ok")
    relay.drain(timeout=30)
    assert events == [
        "enter outer ok",
        "enter inner ok",
        "run ok",
        "exit inner",
        "exit outer",
    ]
    events.clear()
    relay.queue("jobs").put("bad")
    relay.drain(timeout=30, raise_on_failure=False)
    assert events == [
        "enter outer bad", "enter inner bad", "run bad",
        "error inner", "exit inner", "error outer", "exit outer",
    ]  # fmt: skip
    assert relay.queue("jobs").stats().dead == 1


@pytest.mark.parametrize("value", [None, {"total": 3}])
def test_results_on_the_fast_path(relay: Relay, value: Any) -> None:
    relay.consumer("jobs", result_ttl=60)(lambda m: value)
    q = relay.queue("jobs")
    ids = q.put_many([1, 2])
    relay.drain(timeout=30)
    assert [q.result(i, timeout=5) for i in ids] == [value, value]
    assert [q.status(i) for i in ids] == ["succeeded", "succeeded"]
