"""Results, status and cancellation, with the consumers running in this process (relay.start)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redrelay import (
    ConfigurationError,
    EncodeError,
    Failure,
    JobCancelled,
    JobFailed,
    Message,
    Relay,
    ResultNotFound,
    ResultTimeout,
)
from redrelay.protocol.keys import QueueKeys
from redrelay.protocol.results import Status

from .results.layout import bucket_holding
from .worker.helpers import wait_for


@pytest.fixture
def tracked(make_relay: Callable[..., Relay]) -> Iterator[Relay]:
    """A relay with a consumer that stores results for 60 s (not started)."""
    relay = make_relay(retries=1, backoff=0.01, lease=2, heartbeat=0.2)

    @relay.consumer("calc", result_ttl=60)
    def calc(message: Message) -> Any:
        body = message.body
        if body["op"] == "add":
            return body["a"] + body["b"]
        if body["op"] == "fail":
            raise ValueError(f"bad input {body.get('n')}")
        if body["op"] == "object":
            return object()
        if body["op"] == "wait":
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                message.raise_if_cancelled()
                time.sleep(0.01)
            return "not cancelled"
        return None

    yield relay


def _client(relay: Relay) -> redis.Redis:
    return redis.Redis.from_url(relay.connection.url)


def test_value_is_returned_and_not_consumed(tracked: Relay) -> None:
    q = tracked.queue("calc")
    msg_id = q.put({"op": "add", "a": 2, "b": 3})
    assert q.status(msg_id) is Status.QUEUED
    tracked.start()
    try:
        assert q.result(msg_id, timeout=10) == 5
        # Waiting does not consume: a second wait, and status, still see it.
        assert q.result(msg_id, timeout=1) == 5
        assert q.status(msg_id) is Status.SUCCEEDED
    finally:
        tracked.stop()
    # The outcome left the message's record for a result bucket, whose results expire
    # result_ttl after its last write (the key a TTL later: workers drop it first).
    keys = QueueKeys.of(tracked.namespace, "calc")
    client = _client(tracked)
    assert not client.exists(keys.job(msg_id))
    bucket = bucket_holding(client, keys, msg_id)
    assert bucket is not None
    assert 60_000 < client.pttl(bucket) <= 120_000
    assert client.zscore(keys.results, bucket) is not None


def test_failure_raised_after_retries(tracked: Relay) -> None:
    q = tracked.queue("calc")
    msg_id = q.put({"op": "fail", "n": 7})
    tracked.start()
    try:
        with pytest.raises(JobFailed) as info:
            q.result(msg_id, timeout=10)
    finally:
        tracked.stop()
    assert info.value.error_type == "builtins.ValueError"
    assert info.value.error_message == "bad input 7"
    assert info.value.traceback is not None and "ValueError" in info.value.traceback
    assert q.status(msg_id) is Status.FAILED
    assert [d.id for d in q.dead_letters()] == [msg_id]


def test_unencodable_value_is_the_failure(
    tracked: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    dead: list[Failure] = []
    tracked.on_dead = dead.append
    q = tracked.queue("calc")
    msg_id = q.put({"op": "object"})
    caplog.set_level(logging.ERROR, "redrelay.worker")
    tracked.start()
    try:
        with pytest.raises(JobFailed) as info:
            q.result(msg_id, timeout=10)
    finally:
        tracked.stop()
    assert info.value.error_type == "redrelay.errors.EncodeError"
    # said of the return value (it spoke of "the body" and "Nothing was written")
    assert "cannot encode the handler's return value" in info.value.error_message
    assert "retried, then dead-lettered" in info.value.error_message
    # The dead letter's log line and hook name the message (they said "message ?").
    [failure] = dead
    assert failure.message is not None and failure.message.id == msg_id
    assert any(
        f"message {msg_id} dead-lettered" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


def test_timeout_unknown_and_bad_ids(tracked: Relay) -> None:
    q = tracked.queue("calc")
    msg_id = q.put({"op": "add", "a": 1, "b": 1})
    with pytest.raises(ResultTimeout):
        q.result(msg_id, timeout=0.2)
    with pytest.raises(ResultNotFound, match="unknown"):
        q.result("0123456789abcdef", timeout=1)
    assert q.status("0123456789abcdef") is Status.UNKNOWN
    with pytest.raises(ConfigurationError, match="id="):
        q.result("", timeout=1)
    with pytest.raises(ConfigurationError, match="whitespace"):
        q.status("a b")


def test_result_expires(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()

    @relay.consumer("short", result_ttl=0.3)
    def short(message: Message) -> int:
        return 1

    q = relay.queue("short")
    msg_id = q.put({})
    relay.drain(timeout=10)
    assert q.result(msg_id, timeout=0) == 1  # finished already: no wait needed
    key = bucket_holding(_client(relay), QueueKeys.of(relay.namespace, "short"), msg_id)
    assert key is not None
    wait_for(lambda: not _client(relay).exists(key), 5, what="the bucket to expire")
    with pytest.raises(ResultNotFound, match="expired"):
        q.result(msg_id, timeout=1)


def test_untracked_queue_keeps_its_ack_path(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()

    @relay.consumer("plain")
    def plain(message: Message) -> int:
        return 1

    q = relay.queue("plain")
    msg_id = q.put({})
    relay.drain(timeout=10)
    assert not _client(relay).keys(f"{relay.namespace}:*job*")
    with pytest.raises(ResultNotFound):
        q.result(msg_id, timeout=1)


def test_cancel_queued_and_delayed_never_run(tracked: Relay) -> None:
    q = tracked.queue("calc")
    queued = q.put({"op": "add", "a": 1, "b": 2})
    delayed = q.put({"op": "add", "a": 1, "b": 2}, delay=30)
    assert q.status(delayed) is Status.DELAYED
    assert q.cancel(queued) is True
    assert q.cancel(delayed) is True
    assert q.cancel(delayed) is False  # already cancelled
    assert q.status(queued) is Status.CANCELLED
    assert q.stats().delayed == 0
    with pytest.raises(JobCancelled):
        q.result(queued, timeout=1)
    after = q.put({"op": "add", "a": 4, "b": 4})
    tracked.start()
    try:
        assert q.result(after, timeout=10) == 8
    finally:
        tracked.stop()
    assert q.status(queued) is Status.CANCELLED
    assert q.stats().counters.get("acked") == 1  # the cancelled one never reached it
    assert q.stats().counters.get("cancelled") == 2


def test_cancel_running_is_seen_within_a_heartbeat(tracked: Relay) -> None:
    q = tracked.queue("calc")
    msg_id = q.put({"op": "wait"})
    tracked.start()
    try:
        wait_for(lambda: q.status(msg_id) is Status.RUNNING, 10, what="running")
        asked = time.monotonic()
        assert q.cancel(msg_id) is True
        with pytest.raises(JobCancelled):
            q.result(msg_id, timeout=10)
        # heartbeat=0.2: the handler saw it well within a lease.
        assert time.monotonic() - asked < 2
    finally:
        tracked.stop()
    assert q.status(msg_id) is Status.CANCELLED
    assert q.cancel(msg_id) is False


def test_waiters_share_one_connection(tracked: Relay) -> None:
    q = tracked.queue("calc")
    ids = [q.put({"op": "add", "a": i, "b": 1}) for i in range(200)]
    got: dict[str, Any] = {}

    def wait(msg_id: str) -> None:
        got[msg_id] = q.result(msg_id, timeout=20)

    threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    tracked.start()
    try:
        for t in threads:
            t.join(30)
    finally:
        tracked.stop()
    assert got == {msg_id: i + 1 for i, msg_id in enumerate(ids)}


def test_aresult(tracked: Relay) -> None:
    q = tracked.queue("calc")
    ids = [q.put({"op": "add", "a": i, "b": 2}) for i in range(50)]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(q.aresult(i, timeout=20) for i in ids)))

    tracked.start()
    try:
        assert asyncio.run(main()) == [i + 2 for i in range(50)]
    finally:
        tracked.stop()


def test_task_api(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(retries=0)

    @relay.task(queue="tasks.add", result_ttl=60)
    def add(a: int, b: int) -> int:
        return a + b

    @relay.task(queue="tasks.aadd")
    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a * b

    assert add(1, 2) == 3
    h1 = add.delay(2, b=5)
    h2 = aadd.apply_async((3, 4))
    h3 = add.apply_async((1, 1), delay=60)
    assert h3.status() is Status.DELAYED
    assert h3.cancel() is True
    with pytest.raises(EncodeError):
        add.delay(object(), 1)  # type: ignore[arg-type]
    # Arguments the function would refuse fail at the call, not later as a dead letter.
    with pytest.raises(ConfigurationError, match=r"task .*add\(a, b\): too many"):
        add.delay(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="missing a required argument: 'b'"):
        add.apply_async((1,))
    with pytest.raises(ConfigurationError, match="unexpected keyword argument 'c'"):
        asyncio.run(aadd.adelay(1, 2, c=3))  # type: ignore[call-arg]
    assert relay.queue("tasks.add").stats().ready == 1  # h1 only
    relay.start()
    try:
        assert h1.result(10) == 7
        assert h2.result(10) == 12
    finally:
        relay.stop()
    assert h3.status() is Status.CANCELLED


def test_dedup_put_keeps_one_record(tracked: Relay) -> None:
    q = tracked.queue("calc")
    first = q.put({"op": "add", "a": 1, "b": 1}, dedup_key="once")
    again = q.put({"op": "add", "a": 9, "b": 9}, dedup_key="once")
    assert again == first
    jobs = _client(tracked).keys(f"{tracked.namespace}:*:job:*")
    assert jobs == [QueueKeys.of(tracked.namespace, "calc").job(first).encode()]


def test_sharded_queues_say_results_are_not_supported(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay()
    q = relay.queue("wide", shards=2)
    msg_id = q.put({})
    with pytest.raises(ConfigurationError, match="sharded"):
        q.status(msg_id)
    with pytest.raises(ConfigurationError, match="sharded"):
        relay.queue("wide", results=True).put({})
