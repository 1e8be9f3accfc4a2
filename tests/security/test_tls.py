"""redrelay over TLS (``rediss://``) against a real TLS-only redis-server (docs/security.md).

The CA file is a query parameter of the URL: redis-py's ``from_url`` passes unknown query
parameters to the connection as strings, so ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile`` and ``ssl_cert_reqs`` work as they are (``ssl_check_hostname`` is parsed
as a boolean), and every connection redrelay opens (producer, worker, listener) sees them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions as rex

from redrelay import BrokerUnavailable, Message, Relay
from redrelay._server import AdminClient, RedisServer
from redrelay.handlers import Subscriber
from redrelay.listener import Listener

from ..channel_helpers import Collector, wait_for
from ..worker.helpers import WorkerProcess, done_counts
from .conftest import TlsServer
from .helpers import Certs, start_tls_server, tls_url

FAST_LISTENER: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.5,
    "backoff_base": 0.02,
    "backoff_cap": 0.2,
    "poll_interval": 0.02,
}

MakeRelay = Callable[..., Relay]


def _keys(server: RedisServer) -> object:
    """Every key on the server, read over its plain Unix socket (the admin's way in)."""
    with AdminClient(server.url) as client:
        return client.command("KEYS", "*")


def _refused(relay: Relay) -> BrokerUnavailable:
    with pytest.raises(BrokerUnavailable) as refused:
        relay.queue("q").put("secret")
    return refused.value


# -- it works ----------------------------------------------------------------------------


def test_queue_over_tls(tls_server: TlsServer, relays: MakeRelay) -> None:
    relay = relays(tls_server.url)
    seen: list[Any] = []

    @relay.consumer("q", retries=1, backoff=0)
    def handler(message: Message) -> None:
        if message.body == "fail":
            raise RuntimeError("no")
        seen.append(message.body)

    queue = relay.queue("q")
    queue.put("one")
    queue.put("late", delay=0.2)
    queue.put("once", dedup_key="k")
    queue.put("twice", dedup_key="k")
    queue.put_many(["two", "fail"])
    relay.drain(raise_on_failure=False)
    assert seen == ["one", "once", "two", "late"]
    assert [d.body for d in queue.dead_letters()] == ["fail"]
    assert queue.stats().counters["acked"] == 4
    # every TCP connection to this server is TLS: it has no plain port
    assert relay.connection.client.connection_pool.connection_kwargs["ssl_ca_certs"]


def test_channels_over_tls(tls_server: TlsServer, relays: MakeRelay) -> None:
    relay = relays(tls_server.url)
    exact, matched = Collector(), Collector()
    listener = Listener(
        relay,
        [
            Subscriber(channel="news", pattern=False, handler=exact),
            Subscriber(channel="orders.*", pattern=True, handler=matched),
        ],
        **FAST_LISTENER,
    )
    with listener:
        assert listener.connected.wait(10), "the listener did not subscribe"
        assert relay.publish("news", {"n": 1}) == 1
        assert relay.publish("orders.paid", "o-1") == 1
        assert [m.body for m in exact.wait(1)] == [{"n": 1}]
        assert [(m.channel, m.body) for m in matched.wait(1)] == [
            ("orders.paid", "o-1")
        ]
        time.sleep(3 * FAST_LISTENER["ping_interval"])  # idle: PINGs go over TLS too
    assert (listener.gaps, listener.reconnects) == (0, 0)


def test_worker_process_over_tls(tls_server: TlsServer, relays: MakeRelay) -> None:
    relay = relays(tls_server.url)
    ids = relay.queue("work").put_many([{"op": "ok"} for _ in range(20)])
    worker = WorkerProcess(tls_server.url, relay.namespace, TEST_LEASE="2")
    try:
        wait_for(
            lambda: set(done_counts(tls_server.url, relay.namespace)) == set(ids),
            timeout=20,
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        assert relay.queue("work").stats().counters["acked"] == len(ids)
        output = worker.output()
        assert "ready: queues [work]" in output and "Traceback" not in output
    finally:
        worker.close()


def test_client_certificate_when_the_server_requires_one(
    certs: Certs, tmp_path: Path, relays: MakeRelay
) -> None:
    server, port = start_tls_server(
        tmp_path / "redis",
        certs.server_cert,
        certs.server_key,
        certs.ca,
        auth_clients="yes",
    )
    try:
        with_cert = tls_url(
            port,
            ssl_ca_certs=certs.ca,
            ssl_certfile=certs.client_cert,
            ssl_keyfile=certs.client_key,
        )
        relay = relays(with_cert)
        seen: list[Message] = []
        relay.consumer("q")(seen.append)
        relay.queue("q").put("hello")
        relay.drain()
        assert [m.body for m in seen] == ["hello"]

        without = relays(tls_url(port, ssl_ca_certs=certs.ca), connect_retries=0)
        _refused(without)
        assert relay.queue("q").stats().ready == 0  # the refused put wrote nothing
    finally:
        server.stop()


def test_a_missing_client_certificate_is_named(
    certs: Certs, tmp_path: Path, relays: MakeRelay
) -> None:
    server, port = start_tls_server(
        tmp_path / "redis",
        certs.server_cert,
        certs.server_key,
        certs.ca,
        auth_clients="yes",
    )
    try:
        without = relays(tls_url(port, ssl_ca_certs=certs.ca), connect_retries=0)
        assert "ssl_certfile" in str(_refused(without))
    finally:
        server.stop()


# -- it fails clearly --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cert, problem",
    [
        ("rogue", "unable to get local issuer certificate"),  # signed by another CA
        ("wrong_host", "IP address mismatch"),  # a certificate for another host
    ],
)
def test_a_bad_server_certificate_is_refused(
    certs: Certs, tmp_path: Path, relays: MakeRelay, cert: str, problem: str
) -> None:
    server, port = start_tls_server(
        tmp_path / "redis",
        getattr(certs, f"{cert}_cert"),
        getattr(certs, f"{cert}_key"),
        certs.ca,
    )
    try:
        relay = relays(tls_url(port, ssl_ca_certs=certs.ca), connect_retries=1)
        start = time.monotonic()
        error = _refused(relay)
        assert (
            time.monotonic() - start < 20
        )  # bounded: not the 40 s of retried connect timeouts
        assert str(error).startswith(f"cannot reach Redis at rediss://127.0.0.1:{port}")
        assert "certificate verify failed" in str(error) and problem in str(error)
        assert isinstance(error.__cause__, rex.ConnectionError)
        assert _keys(server) == []  # nothing was sent
    finally:
        server.stop()


def test_no_ca_means_the_system_store_which_refuses_a_private_ca(
    tls_server: TlsServer, relays: MakeRelay
) -> None:
    relay = relays(tls_url(tls_server.port), connect_retries=0)
    assert "certificate verify failed" in str(_refused(relay))


def test_a_listener_with_a_bad_certificate_keeps_retrying_and_says_why(
    certs: Certs,
    tmp_path: Path,
    relays: MakeRelay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, port = start_tls_server(
        tmp_path / "redis", certs.rogue_cert, certs.rogue_key, certs.ca
    )
    try:
        relay = relays(tls_url(port, ssl_ca_certs=certs.ca))
        caplog.set_level(logging.WARNING, logger="redrelay.channel")
        listener = Listener(
            relay, [Subscriber(channel="news", pattern=False, handler=print)]
        )
        with listener:
            assert not listener.connected.wait(0.5)
        (line,) = [r.getMessage() for r in caplog.records]
        assert "listener cannot listen" in line
        assert "certificate verify failed" in line
    finally:
        server.stop()


def test_plain_redis_url_against_the_tls_port_fails(
    tls_server: TlsServer, relays: MakeRelay
) -> None:
    relay = relays(f"redis://127.0.0.1:{tls_server.port}", connect_retries=0)
    start = time.monotonic()
    error = _refused(relay)
    assert time.monotonic() - start < 20
    assert str(error).startswith(
        f"cannot reach Redis at redis://127.0.0.1:{tls_server.port}"
    )


def test_plain_redis_url_against_the_tls_port_says_use_rediss(
    tls_server: TlsServer, relays: MakeRelay
) -> None:
    relay = relays(f"redis://127.0.0.1:{tls_server.port}", connect_retries=0)
    assert "rediss://" in str(_refused(relay))


def test_rediss_url_against_a_plain_port_says_so(
    redis_server_factory: Callable[..., RedisServer],
    certs: Certs,
    relays: MakeRelay,
) -> None:
    plain = redis_server_factory(unix_socket=False, appendonly=False)
    url = tls_url(plain.port or 0, ssl_ca_certs=certs.ca, socket_timeout="0.3")
    relay = relays(url, connect_retries=0)
    assert "TLS" in str(_refused(relay))


# -- asyncio: the same URL handling and the same errors ----------------------------------


def test_async_producers_over_tls(tls_server: TlsServer, relays: MakeRelay) -> None:
    relay = relays(tls_server.url)
    queue = relay.queue("q")

    async def main() -> tuple[int, int]:
        await queue.aput("one")
        await queue.aput("late", delay=30)
        await queue.aput_many(["two", "three"])
        await relay.apublish("news", 1)
        stats = await queue.astats()
        client = relay.aconnection.client
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"]
        await relay.aconnection.close()
        return stats.ready, stats.delayed

    assert asyncio.run(main()) == (3, 1)
    assert [m.body for m in queue.peek(3)] == ["one", "two", "three"]


def test_async_tls_mix_up_is_told_like_sync(
    tls_server: TlsServer, relays: MakeRelay
) -> None:
    relay = relays(f"redis://127.0.0.1:{tls_server.port}", connect_retries=0)

    async def refused() -> BrokerUnavailable:
        with pytest.raises(BrokerUnavailable) as error:
            await relay.queue("q").aput("secret")
        await relay.aclose()
        return error.value

    error = asyncio.run(refused())
    assert str(error).startswith(
        f"cannot reach Redis at redis://127.0.0.1:{tls_server.port}"
    )
    assert "rediss://" in str(error)
