"""Durable puts: ``WAIT``/``WAITAOF`` on the write's own connection, against a real replica."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from redrelay import ConfigurationError, DurabilityNotConfirmed, Relay
from redrelay._server import RedisServer
from redrelay.io.sync import Connection

from ..faults.proxy import FaultProxy
from ..faults.workers import report
from .conftest import NO_SYNC_DELAY, Pair


def _llen(port: int | None, key: str) -> int:
    with redis.Redis(port=port) as client:
        return int(client.llen(key))


def test_durable_puts_are_on_the_replica_when_they_return(pair: Pair) -> None:
    relay = Relay(pair.primary.url, namespace="durable", durable="replicas:1")
    q = relay.queue("work")
    # The first call of the put script on a fresh server: NOSCRIPT inside the pipeline.
    q.put("later", delay=60)
    assert q.put("once", dedup_key="k") == q.put("again", dedup_key="k")
    q.put("plain")
    q.put_many(["a", "b", "c"])
    # No waiting here: WAIT returned, so the replica has applied every write.
    assert _llen(pair.replica.port, q.keys.ready) == 5
    with redis.Redis(port=pair.replica.port) as replica:
        assert replica.zcard(q.keys.delayed) == 1
    relay.close()


def test_unconfirmed_put_raises_and_says_it_was_written(pair: Pair) -> None:
    relay = Relay(pair.primary.url, namespace="durable", durable_timeout=1.0)
    q = relay.queue("work")
    first = q.put("warm-up", dedup_key="dk", durable="replicas:1")
    pair.pause_replica()
    try:
        with pytest.raises(DurabilityNotConfirmed) as dedup:
            q.put("same key", dedup_key="dk", durable="replicas:1")
        assert dedup.value.ids == [first]  # the message in the queue, not the new id
        with pytest.raises(DurabilityNotConfirmed) as info:
            q.put("one", durable="replicas:1")
        assert "WAS written" in str(info.value)
        assert "asked replicas:1, got 0 replica(s) within 1s" in str(info.value)
        with pytest.raises(DurabilityNotConfirmed) as many:
            q.put_many(["x", "y"], durable="replicas:1")
        assert len(many.value.ids) == 2
        with pytest.raises(DurabilityNotConfirmed):
            q.put("delayed", delay=60, durable="replicas:1")
        q.put("not durable")  # the relay's default: no wait
        durable_relay = Relay(
            pair.primary.url,
            namespace="durable",
            durable="replicas:1",
            durable_timeout=1.0,
        )
        with pytest.raises(DurabilityNotConfirmed):
            durable_relay.queue("work").put("relay default")
        durable_relay.queue("work").put("opted out", durable=False)
        # Written all the same: warm-up, one, x, y, not durable, relay default, opted out.
        assert _llen(pair.primary.port, q.keys.ready) == 7
    finally:
        pair.resume_replica()
    relay.close()


def test_acked_put_is_lost_on_failover_without_durable(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """The async-replication window, held open by a partition between the primary and
    its replica: a plain put is acknowledged and then lost with the primary; a durable
    one says that it is at risk. (A SIGSTOPped replica would not do: what the primary
    already sent waits in the replica's socket buffer and arrives after SIGCONT.)"""
    primary = redis_server_factory(
        unix_socket=False, appendonly=False, extra_args=NO_SYNC_DELAY
    )
    with FaultProxy(("127.0.0.1", primary.port or 0)) as link:
        replica = redis_server_factory(
            unix_socket=False,
            appendonly=False,
            extra_args=["--replicaof", "127.0.0.1", str(link.port)],
        )
        Pair(primary, replica).wait_synced()
        # The replica's acks go through the proxy: on a busy machine they can take
        # more than a second, so the puts that must be confirmed wait up to 5 s.
        with Relay(primary.url, namespace="durable", durable_timeout=5.0) as patient:
            patient.queue("work").put_many(["before"] * 10, durable="replicas:1")
        relay = Relay(primary.url, namespace="durable", durable_timeout=1.0)
        q = relay.queue("work")
        link.cut()
        acked = q.put("acknowledged, then lost")
        with pytest.raises(DurabilityNotConfirmed):
            q.put("reported", durable="replicas:1")
        primary.kill()
        with redis.Redis(port=replica.port) as promoted:
            promoted.execute_command("REPLICAOF", "NO", "ONE")  # what Sentinel does
            entries = promoted.lrange(q.keys.ready, 0, -1)
        relay.close()
    assert len(entries) == 10
    assert not any(acked.encode() in e for e in entries)
    report("durable_loss_window", acked_then_lost=1, durable_reported=1, kept=10)


def test_aof_needs_waitaof(pair: Pair) -> None:
    version = Connection(pair.primary.url).server_version()
    relay = Relay(pair.primary.url, namespace="durable", durable="aof")
    if version >= (7, 2):
        pytest.skip("this redis-server has WAITAOF")
    with pytest.raises(ConfigurationError) as info:
        relay.queue("work").put("x")
    shown = ".".join(map(str, version))
    assert f"is {shown}" in str(info.value) and "7.2" in str(info.value)
    assert _llen(pair.primary.port, relay.queue("work").keys.ready) == 0
    relay.close()


@pytest.mark.parametrize(
    "value", ["replicas:0", "replicas:101", "replicas", "aof+", "AOF", "", 2, True]
)
def test_bad_durable_values_are_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="durable= must be 'replicas:N'"):
        Relay("redis://127.0.0.1:1", durable=value)  # type: ignore[arg-type]
    relay = Relay("redis://127.0.0.1:1")
    if value is not True:
        with pytest.raises(ConfigurationError, match="durable="):
            relay.queue("q").put(1, durable=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, 5.5, "x"])
def test_bad_durable_timeout_is_refused(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="durable_timeout"):
        Relay("redis://127.0.0.1:1", durable="replicas:1", durable_timeout=timeout)  # type: ignore[arg-type]
