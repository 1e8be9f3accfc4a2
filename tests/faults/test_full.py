"""A full Redis (``maxmemory`` with ``noeviction``): clear errors, no partial writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from redrelay import BrokerError, BrokerFull, Relay
from redrelay._server import RedisServer

from .history import audit
from .workers import report

BODY = {"pad": "x" * 1000}


@pytest.fixture
def small_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(
        appendonly=False,
        extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"],
    )


def _fill(relay: Relay) -> tuple[int, BrokerError]:
    """Put until Redis refuses; return how many went in, and the error."""
    q = relay.queue("work")
    for n in range(100_000):
        try:
            q.put(BODY)
        except BrokerError as exc:
            return n, exc
    raise AssertionError("a 2 MB Redis took 100 MB of messages")


def test_full_redis_raises_broker_full(small_server: RedisServer) -> None:
    relay = Relay(small_server.url, namespace="full")
    n, error = _fill(relay)
    assert n > 100
    assert isinstance(error, BrokerFull), repr(error)
    assert "maxmemory" in str(error) and "Nothing was written" in str(error)


def test_full_redis_writes_nothing_partially(small_server: RedisServer) -> None:
    """Once Redis refuses, nothing of a refused call is written: not a put_many batch,
    not a delayed put, and not the dedup key of a refused put (which would make a retry
    report the id of a message that does not exist). Before that, a put_many batch is
    written whole or not at all."""
    client = redis.Redis.from_url(small_server.url)
    relay = Relay(small_server.url, namespace="full")
    q = relay.queue("work")
    batches = 0
    while True:
        before = client.llen(q.keys.ready)
        try:
            q.put_many([BODY] * 100)
        except BrokerError:
            assert client.llen(q.keys.ready) == before  # all or nothing
            break
        assert client.llen(q.keys.ready) == before + 100
        batches += 1
    n, _ = _fill(relay)  # top it up with single puts until refused
    # At the edge, Redis's used memory moves by itself (client buffers shrink), so a
    # call right after a refusal may fit. Hold the edge well below what is used: every
    # call below must be refused, and write nothing.
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    ready = client.llen(q.keys.ready)
    for call in (
        lambda: q.put_many([BODY] * 10),
        lambda: q.put(BODY),
        lambda: q.put(BODY, delay=60),
        lambda: q.put(BODY, dedup_key="once"),
    ):
        with pytest.raises(BrokerError) as info:
            call()
        assert "maxmemory" in str(info.value)
    assert client.llen(q.keys.ready) == ready
    assert client.zcard(q.keys.delayed) == 0
    assert client.keys(q.keys.dedup("*")) == []
    # Free memory: the same dedup key now writes a message, exactly once.
    client.config_set("maxmemory", "2mb")
    client.ltrim(q.keys.ready, 0, ready // 2)
    first = q.put(BODY, dedup_key="once")
    assert q.put(BODY, dedup_key="once") == first
    assert first in audit(client, q.keys).ids()
    report("redis_full", batches_before_full=batches, single_puts_after=n)


def test_workers_drain_a_full_redis(small_server: RedisServer) -> None:
    relay = Relay(small_server.url, namespace="full")
    done: list[str] = []
    relay.consumer("work")(lambda m: done.append(m.id))
    n, _ = _fill(relay)
    relay.drain(timeout=20)
    assert len(done) == n
    assert len(set(done)) == n
    q = relay.queue("work")
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)
    assert stats.counters["acked"] == n
    q.put(BODY)  # drained: producers write again
    report("redis_full_drain", drained=n)


def test_put_is_still_refused_while_workers_run(small_server: RedisServer) -> None:
    """allow-oom is only on the scripts that move or delete: a full Redis still refuses
    put (plain, delayed, deduplicated) and put_many while a worker keeps its lease."""
    relay = Relay(small_server.url, namespace="full")
    gate = threading.Event()  # handlers hold their messages: nothing is freed
    relay.consumer("work", lease=2)(lambda m: gate.wait(30))
    _fill(relay)
    q = relay.queue("work")
    relay.start()  # joins (heartbeat.lua) and fetches at OOM
    try:
        deadline = time.monotonic() + 10
        while q.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert q.stats().in_flight > 0
        for call in (
            lambda: q.put(BODY),
            lambda: q.put(BODY, delay=60),
            lambda: q.put(BODY, dedup_key="k"),
            lambda: q.put_many([BODY]),
        ):
            with pytest.raises(BrokerFull):
                call()
    finally:
        gate.set()
        relay.close()
