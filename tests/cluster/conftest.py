"""The session's 3-primary Redis Cluster (``redrelay.testing``) and relays on it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redrelay import Relay
from redrelay._cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster(redrelay_cluster: LocalCluster) -> LocalCluster:
    """The plugin's session cluster (redrelay.testing): 3 primaries on loopback."""
    return redrelay_cluster


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
