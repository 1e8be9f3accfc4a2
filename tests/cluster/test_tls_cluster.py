"""``rediss+cluster://``: a Redis Cluster whose nodes speak TLS only (to clients, to each
other and to their replicas), used through the sync and the asyncio API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from redrelay import BrokerUnavailable, Message, Relay
from redrelay._cluster import ClusterTls, LocalCluster
from redrelay.listener import Listener

from ..processes import wait_for
from ..security.helpers import Certs, make_certs
from .conftest import needs_async_cluster


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("cluster-certs"))


@pytest.fixture(scope="module")
def tls_cluster(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    files = ClusterTls(cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
    directory = tmp_path_factory.mktemp("tls-cluster")
    with LocalCluster(directory, nodes=3, replicas=1, tls=files) as cluster:
        yield cluster


@needs_async_cluster
def test_the_url_names_every_tls_port_and_the_ca(
    tls_cluster: LocalCluster, certs: Certs
) -> None:
    url = tls_cluster.url
    assert url.startswith("rediss+cluster://127.0.0.1:")
    assert url.count(",") == 5 and url.endswith(f"ssl_ca_certs={certs.ca}")
    # no plain TCP port: the ports in the URL are the TLS ones
    assert all(s.port is None for s in tls_cluster.servers)
    relay = Relay(url, namespace="t-conf")
    try:
        conn = relay.connection
        assert conn.config_get("tls-cluster") == "yes"  # the bus is TLS too
        assert conn.config_get("tls-replication") == "yes"

        async def aconfig() -> str | None:
            value = await relay.aconnection.config_get("tls-cluster")
            await relay.aconnection.close()
            return value

        assert asyncio.run(aconfig()) == "yes"
    finally:
        relay.close()


@needs_async_cluster
def test_queues_topics_and_channels_sync_and_async(tls_cluster: LocalCluster) -> None:
    relay = Relay(tls_cluster.url, namespace=f"t{secrets.token_hex(3)}")
    done: list[Any] = []
    heard: list[Any] = []
    seen: list[Any] = []
    relay.consumer("jobs", shards=3)(lambda m: done.append(m.body))
    relay.subscriber("news")(lambda m: heard.append(m.body))

    @relay.subscriber("orders", group="billing", start="beginning")
    def bill(message: Message) -> None:
        seen.append(message.body)

    jobs = relay.queue("jobs")

    async def produce() -> None:
        await jobs.aput({"n": 2})
        await jobs.aput_many([{"n": 3}, {"n": 4}])
        await relay.topic("orders").apublish({"o": 2})
        await relay.apublish("news", {"via": "async"})
        assert (await jobs.astats()).ready == 5
        await relay.aconnection.close()

    try:
        with Listener(relay, relay.subscribers) as listener:
            assert listener.connected.wait(10)
            jobs.put({"n": 0})
            jobs.put_many([{"n": 1}])
            relay.topic("orders").publish({"o": 1})
            relay.publish("news", {"via": "sync"})
            asyncio.run(produce())
            wait_for(lambda: len(heard) == 2, timeout=10, what="two messages")
        relay.drain(timeout=20)
        assert sorted(b["n"] for b in done) == [0, 1, 2, 3, 4]
        assert heard == [{"via": "sync"}, {"via": "async"}]
        assert seen == [{"o": 1}, {"o": 2}]
        assert jobs.stats().counters["acked"] == 5
    finally:
        relay.close()


@needs_async_cluster
def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_cluster: LocalCluster, certs: Certs
) -> None:
    # the rogue certificate's CA did not sign the nodes' certificates
    url = tls_cluster.url.split("?")[0] + f"?ssl_ca_certs={certs.rogue_cert}"
    relay = Relay(url, namespace="t-rogue", connect_retries=0)
    try:
        refused = r"rediss\+cluster://.*(?i:certificate verify failed)"
        with pytest.raises(BrokerUnavailable, match=refused):
            relay.queue("jobs").put(1)

        async def aput() -> None:
            await relay.queue("jobs").aput(1)

        with pytest.raises(BrokerUnavailable, match=refused):
            asyncio.run(aput())
    finally:
        relay.close()
