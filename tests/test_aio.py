"""The asyncio API (aput, aput_many, astats, apublish) against a real Redis, and async
handlers in the worker: real concurrency on one loop thread, subscribers, time limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis

from redrelay import (
    BrokerUnavailable,
    ConfigurationError,
    EncodeError,
    Message,
    MessageTooLarge,
    Relay,
)
from redrelay.listener import Listener

WAIT = 15.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def _error(call: Callable[[], Any]) -> tuple[type[BaseException], str]:
    try:
        result = call()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError("no error raised")


def test_aput_aput_many_and_astats(relay: Relay) -> None:
    q = relay.queue("jobs")

    async def main() -> tuple[str, list[str], str, str, str]:
        first = await q.aput({"n": 1}, headers={"trace": "t1"})
        many = await q.aput_many([{"n": 2}, {"n": 3}])
        delayed = await q.aput({"n": 4}, delay=60)
        once = await q.aput({"n": 5}, dedup_key="k")
        again = await q.aput({"n": 6}, dedup_key="k")
        assert again == once
        stats = await q.astats()
        assert (stats.ready, stats.delayed) == (4, 1)
        return first, many, delayed, once, again

    first, many, _, once, _ = run(main())
    # The sync side sees exactly what the async side wrote.
    peeked = q.peek(10)
    assert [m.id for m in peeked] == [first, *many, once]
    assert peeked[0].headers == {"trace": "t1"} and peeked[0].body == {"n": 1}
    assert q.stats().delayed == 1
    assert [s.name for s in relay.stats()] == ["jobs"]
    assert [s.name for s in run(relay.astats())] == ["jobs"]


def test_bad_arguments_raise_the_same_errors_as_sync(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(max_message_size=1000)
    q = relay.queue("q")
    cases: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
        (lambda: q.put("x" * 2000), lambda: q.aput("x" * 2000)),
        (lambda: q.put(object()), lambda: q.aput(object())),
        (lambda: q.put(1, delay=-1), lambda: q.aput(1, delay=-1)),
        (
            lambda: q.put(1, delay=1, eta=time.time()),  # type: ignore[arg-type]
            lambda: q.aput(1, delay=1, eta=time.time()),  # type: ignore[arg-type]
        ),
        (lambda: q.put(1, dedup_key=""), lambda: q.aput(1, dedup_key="")),
        (
            lambda: q.put(1, headers={"a": 1}),  # type: ignore[dict-item]
            lambda: q.aput(1, headers={"a": 1}),  # type: ignore[dict-item]
        ),
        (lambda: q.put_many([1, object()]), lambda: q.aput_many([1, object()])),
        (
            lambda: relay.publish("news", object()),
            lambda: relay.apublish("news", object()),
        ),
        (
            lambda: relay.publish("bad name!", 1),
            lambda: relay.apublish("bad name!", 1),
        ),
    ]
    for sync_call, async_call in cases:
        sync_error = _error(sync_call)
        assert _error(async_call) == sync_error
    kinds = {_error(s)[0] for s, _ in cases}
    assert {MessageTooLarge, EncodeError, ConfigurationError} <= kinds
    assert q.stats().ready == 0 and q.stats().delayed == 0  # nothing was written


def test_errors_are_translated_when_redis_is_down(tmp_path: Path) -> None:
    relay = Relay(f"unix://{tmp_path}/nothing.sock", connect_retries=1)

    async def main() -> None:
        with pytest.raises(BrokerUnavailable, match="cannot reach Redis") as info:
            await relay.queue("q").aput(1)
        assert info.value.__cause__ is not None  # the redis error is kept as the cause
        with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
            await relay.apublish("news", 1)
        with pytest.raises(BrokerUnavailable):
            await relay.queue("q").astats()
        await relay.aclose()

    run(main())


def test_one_relay_used_from_several_event_loops(relay: Relay) -> None:
    q = relay.queue("loops")

    async def put(n: int) -> str:
        return await q.aput(n)

    # asyncio.run() makes a new loop each time; a second loop in another thread too.
    ids = [run(put(1)), run(put(2))]
    box: list[str] = []
    thread = threading.Thread(target=lambda: box.append(run(put(3))))
    thread.start()
    thread.join(WAIT)
    ids += box
    assert [m.body for m in q.peek(10)] == [1, 2, 3]
    assert [m.id for m in q.peek(10)] == ids
    # every loop's client was closed when its loop shut down
    assert relay.aconnection._clients == {}

    async def two_clients() -> None:
        await q.aput(4)
        await relay.aclose()

    run(two_clients())


def test_apublish_reaches_subscribers_with_per_task_sequences(
    relay: Relay,
) -> None:
    got: list[Message] = []
    received = threading.Event()

    def on_message(message: Message) -> None:
        got.append(message)
        if len(got) == 20:
            received.set()

    from redrelay.handlers import Subscriber

    gaps: list[Any] = []
    with Listener(
        relay,
        [Subscriber(channel="news", pattern=False, handler=on_message)],
        on_gap=gaps.append,
    ) as listener:
        assert listener.connected.wait(WAIT)

        async def publisher(n: int) -> None:
            for i in range(5):
                await relay.apublish("news", {"task": n, "i": i})

        async def main() -> None:
            await asyncio.gather(*(publisher(n) for n in range(4)))

        run(main())
        assert received.wait(WAIT)
    assert sorted((m.body["task"], m.body["i"]) for m in got) == [
        (n, i) for n in range(4) for i in range(5)
    ]
    assert gaps == []  # interleaved tasks never look like lost messages


def test_async_consumer_runs_concurrently_on_one_loop_thread(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(lease=5)
    state: dict[str, Any] = {"in_flight": 0, "max": 0, "threads": set()}

    @relay.consumer("fan", concurrency=20, prefetch=20)
    async def handler(message: Message) -> None:
        if "all_in" not in state:
            state["all_in"] = asyncio.Event()  # created on the worker's loop
        state["threads"].add(threading.get_ident())
        state["in_flight"] += 1
        state["max"] = max(state["max"], state["in_flight"])
        if state["in_flight"] == 20:
            state["all_in"].set()
        # Only reachable if all 20 run at once: one at a time would time out here.
        await asyncio.wait_for(state["all_in"].wait(), WAIT)
        state["in_flight"] -= 1

    relay.queue("fan").put_many(range(20))
    relay.drain(timeout=WAIT * 2)
    stats = relay.queue("fan").stats()
    assert stats.counters.get("acked") == 20
    assert stats.counters.get("retried", 0) == 0 and stats.dead == 0
    assert state["max"] == 20
    assert len(state["threads"]) == 1
    assert threading.get_ident() not in state["threads"]


def test_async_consumer_failures_retry_and_dead_letter_like_sync(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(retries=1, backoff=0.01)
    calls: list[int] = []

    @relay.consumer("flaky", concurrency=4, time_limit=0.5)
    async def handler(message: Message) -> None:
        calls.append(message.attempt)
        if message.body == "fail":
            raise RuntimeError("asked to fail")
        if message.body == "slow":
            await asyncio.sleep(30)

    q = relay.queue("flaky")
    q.put_many(["ok", "fail", "slow"])
    relay.drain(timeout=WAIT * 2, raise_on_failure=False)
    dead = {d.body: d.reason for d in q.dead_letters()}
    assert set(dead) == {"fail", "slow"}
    assert "RuntimeError: asked to fail" in dead["fail"]
    assert "TimeLimitExceeded" in dead["slow"] and "time limit (0.5s)" in dead["slow"]
    assert q.stats().counters["acked"] == 1
    assert sorted(calls) == [1, 1, 1, 2, 2]


def test_async_subscribers_run_concurrently(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    state: dict[str, Any] = {"in_flight": 0, "done": 0, "threads": set()}
    finished = threading.Event()

    @relay.subscriber("chat", concurrency=5)
    async def on_chat(message: Message) -> None:
        if "all_in" not in state:
            state["all_in"] = asyncio.Event()
        state["threads"].add(threading.get_ident())
        state["in_flight"] += 1
        if state["in_flight"] == 5:
            state["all_in"].set()
        await asyncio.wait_for(state["all_in"].wait(), WAIT)
        state["done"] += 1
        if state["done"] == 5:
            finished.set()

    with pytest.raises(ConfigurationError, match="async def"):

        @relay.subscriber("chat", concurrency=2)
        def plain(message: Message) -> None: ...

    relay.start()
    try:
        runner = relay._runner
        assert runner is not None and runner._listener is not None
        assert runner._listener.connected.wait(WAIT)

        async def main() -> None:
            for i in range(5):
                await relay.apublish("chat", i)

        run(main())
        assert finished.wait(WAIT), state
        assert runner._listener.handler_errors == 0
    finally:
        relay.stop()
    assert len(state["threads"]) == 1


def test_more_concurrent_calls_than_pooled_connections_wait_their_turn(
    relay: Relay,
) -> None:
    from redrelay.io.aio import MAX_CONNECTIONS

    q = relay.queue("burst")
    n = MAX_CONNECTIONS * 3

    async def main() -> list[str]:
        ids = await asyncio.gather(*(q.aput(i) for i in range(n)))
        assert (await q.astats()).ready == n
        return list(ids)

    ids = run(main())
    assert len(set(ids)) == n


def test_ainvoke_time_limit_and_the_handlers_own_errors() -> None:
    from redrelay.errors import TimeLimitExceeded
    from redrelay.handlers import acall_handler, ainvoke

    message = Message(id="1", body=None)

    async def slow(message: Message) -> None:
        await asyncio.sleep(30)

    async def own_timeout(message: Message) -> None:
        raise TimeoutError("the handler's own")

    async def exits(message: Message) -> None:
        raise SystemExit(3)

    with pytest.raises(TimeLimitExceeded, match=r"time limit \(0.05s\)"):
        run(ainvoke(slow, message, (), 0.05))
    with pytest.raises(TimeoutError, match="the handler's own"):
        run(ainvoke(own_timeout, message, (), 5.0))  # not mistaken for the limit
    # The worker calls it through acall_handler: SystemExit is the handler's failure,
    # returned with its class (issue 18), never raised into the event loop.
    with pytest.raises(SystemExit):
        run(ainvoke(exits, message, ()))
    _, failure = run(acall_handler(exits, message, ()))
    assert isinstance(failure, SystemExit) and failure.code == 3


def test_redis_killed_and_restarted_under_a_running_loop(
    redis_server_factory: Callable[..., Any],
) -> None:
    # AOF fsynced on every write: a SIGKILL right after a put keeps it (with everysec,
    # a busy disk can postpone the write and the kill lose "before").
    server = redis_server_factory(appendfsync="always")
    relay = Relay(server.url, namespace="restart", connect_retries=1)
    q = relay.queue("q")

    async def main() -> None:
        await q.aput("before")
        server.kill()
        with pytest.raises(BrokerUnavailable, match="cannot reach Redis") as down:
            await q.aput("while down")
        assert isinstance(down.value.__cause__, (OSError, redis.RedisError))
        await asyncio.to_thread(server.start)
        await q.aput("after")  # the same loop's client reconnects by itself
        assert [m.body for m in await asyncio.to_thread(q.peek, 5)] == [
            "before",
            "after",
        ]
        await relay.aclose()

    run(main())


def test_a_loop_closed_without_shutdown_is_forgotten(relay: Relay) -> None:
    q = relay.queue("q")

    async def put_then_drop_sockets() -> None:
        await q.aput(1)
        # (its sockets closed here only so that this test leaves no unclosed socket
        # behind: asyncio warns about those, whichever library opened them)
        await relay.aconnection.client.connection_pool.disconnect()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(put_then_drop_sockets())
    loop.close()  # no shutdown_asyncgens(): the client's entry stays behind
    assert len(relay.aconnection._clients) == 1
    run(q.aput(2))  # the next new client drops the dead loop's entry
    assert relay.aconnection._clients == {}
    assert [m.body for m in q.peek(5)] == [1, 2]
