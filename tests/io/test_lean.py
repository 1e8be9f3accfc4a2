"""``put`` and ``publish`` send LPUSH and PUBLISH on a lean path (``Connection._lean_call``,
without redis-py's per-call layers): an error reply, a server that is gone and a reply
that never comes must behave there as on the full path."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from redrelay import Relay
from redrelay._server import RedisServer
from redrelay.errors import BrokerError, BrokerUnavailable
from redrelay.io.sync import Connection
from redrelay.protocol.requests import Step


def test_an_error_reply_is_translated_and_the_connection_goes_back(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(appendonly=False)
    r = redis.Redis.from_url(server.url)
    relay = Relay(server.url)
    try:
        q = relay.queue("lean")
        q.put(1)  # opens the relay's connection
        r.delete(q.keys.ready)
        r.set(q.keys.ready, "not a list")
        before = len(r.client_list())
        for _ in range(20):
            with pytest.raises(BrokerError, match="WRONGTYPE"):
                q.put(2)
        # Each failed put gave its connection back: a leak would open one per put.
        assert len(r.client_list()) == before
        r.delete(q.keys.ready)
        q.put(3)
        assert r.llen(q.keys.ready) == 1
        assert relay.channel("lean").publish("x") == 0
    finally:
        relay.close()
        r.close()


def test_a_stopped_server_is_reported_and_a_restarted_one_used_again(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(appendonly=True)
    relay = Relay(server.url, connect_retries=1)
    try:
        q = relay.queue("lean")
        q.put(1)
        server.stop()
        with pytest.raises(BrokerUnavailable):
            q.put(2)
        with pytest.raises(BrokerUnavailable):
            relay.channel("lean").publish("x")
        server.start()
        q.put(3)
        r = redis.Redis.from_url(server.url)
        entries = r.lrange(q.keys.ready, 0, -1)
        assert [b'"b":3' in e for e in entries] == [True, False]
        assert [b'"b":1' in e for e in entries] == [False, True]
        r.close()
    finally:
        relay.close()


def test_a_reply_that_never_comes_times_out_and_the_connection_recovers(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(appendonly=False)
    r = redis.Redis.from_url(server.url)
    conn = Connection(server.url, retries=1, socket_timeout=0.3)
    push = Step((("LPUSH", "k", b"x"),))
    try:
        assert conn.send([push]) == 1
        r.client_pause(60_000, all=False)  # writes wait; the reply does not come
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            conn.send([push])
        assert time.monotonic() - started < 30  # bounded, not a hang
        r.client_unpause()
        # The connection was replaced, not reused with a reply unread: the reply is
        # this push's (whether the unanswered ones ran is unknown, as on the full path).
        assert conn.send([push]) == r.llen("k") >= 2
        assert r.lrange("k", 0, 0) == [b"x"]
    finally:
        r.client_unpause()
        conn.close()
        r.close()
