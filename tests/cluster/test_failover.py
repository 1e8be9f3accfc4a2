"""A node of the cluster dies: the listener moves to another node; publishing (sync and
async) goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redrelay import Relay
from redrelay._cluster import LocalCluster
from redrelay._server import AdminClient
from redrelay.listener import Listener

from ..processes import wait_for
from .conftest import needs_async_cluster


def _subscribed_node(cluster: LocalCluster, channel_key: str) -> int | None:
    """The number (from 1) of the running node where someone subscribes to ``channel_key``."""
    for i, server in enumerate(cluster.servers):
        if not server.running():
            continue
        with AdminClient(server.url) as client:
            reply = client.command("PUBSUB", "NUMSUB", channel_key)
        if isinstance(reply, list) and reply[1] == 1:
            return i + 1
    return None


def test_channels_survive_the_death_of_a_node(tmp_path: Path) -> None:
    got: list[object] = []
    with LocalCluster(tmp_path, nodes=3) as cluster:
        listening = Relay(cluster.url, namespace="fo")
        listening.subscriber("news")(lambda m: got.append(m.body))
        key = listening.channel("news").key
        listener = Listener(
            listening,
            listening.subscribers,
            ping_interval=2.0,  # generous: a busy machine must not look like a dead node
            ping_timeout=3.0,
            backoff_base=0.02,
            backoff_cap=0.2,
        )
        with listener:
            assert listener.connected.wait(10)
            first = wait_for(
                lambda: _subscribed_node(cluster, key), timeout=5, what="subscribed"
            )
            cluster.servers[first - 1].kill()
            second = wait_for(
                lambda: _subscribed_node(cluster, key), timeout=15, what="resubscribed"
            )
            assert second != first
            assert listener.connected.wait(5)
            publisher = Relay(cluster.url, namespace="fo")
            client = publisher.connection.client
            dead_port = cluster.servers[first - 1].port
            for node in client.get_primaries():  # type: ignore[attr-defined]
                if node.port != dead_port:
                    client.set_default_node(node)  # type: ignore[attr-defined]
                    publisher.publish("news", {"via": node.name})
            (dead,) = [n for n in client.get_primaries() if n.port == dead_port]  # type: ignore[attr-defined]
            client.set_default_node(dead)  # type: ignore[attr-defined]
            publisher.publish("news", {"via": "the next live node"})
            wait_for(lambda: len(got) == 3, timeout=10, what="three messages")
            publisher.close()
        listening.close()


@needs_async_cluster
def test_clients_start_while_the_first_node_is_down(tmp_path: Path) -> None:
    """The node listed first, which also holds slot 0 (the client's default node), is down."""
    got: list[object] = []
    with LocalCluster(tmp_path, nodes=3) as cluster:
        cluster.servers[0].kill()
        listening = Relay(cluster.url, namespace="fo")
        listening.subscriber("news")(lambda m: got.append(m.body))
        with Listener(listening, listening.subscribers, backoff_cap=0.2) as listener:
            assert listener.connected.wait(10)
            publisher = Relay(cluster.url, namespace="fo")
            publisher.publish("news", "through a live node")
            wait_for(lambda: got == ["through a live node"], timeout=10, what="message")
            asyncio.run(publisher.apublish("news", "async, through a live node"))
            wait_for(lambda: len(got) == 2, timeout=10, what="the async message")
            assert got[1] == "async, through a live node"
            publisher.close()
        listening.close()
