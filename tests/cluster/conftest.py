"""A 3-primary Redis Cluster on loopback for the whole module (``redrelay._cluster``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redrelay import Relay
from redrelay._cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three ``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``."""
    directory: Path = tmp_path_factory.mktemp("cluster")
    with LocalCluster(directory, nodes=3) as local:
        yield local


@pytest.fixture
def make_cluster_relay(cluster: LocalCluster) -> Iterator[Callable[..., Relay]]:
    """``make_cluster_relay(**kwargs)``: a Relay on the cluster with a fresh namespace."""
    relays: list[Relay] = []
    namespace = f"c{secrets.token_hex(4)}"

    def factory(**kwargs: Any) -> Relay:
        kwargs.setdefault("namespace", namespace)
        kwargs.setdefault("backoff", 0.01)
        relay = Relay(kwargs.pop("url", cluster.url), **kwargs)
        relays.append(relay)
        return relay

    yield factory
    for relay in relays:
        relay.close()
