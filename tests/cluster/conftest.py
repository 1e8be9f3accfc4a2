"""The session's 3-primary Redis Cluster (``redrelay.testing``) and relays on it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redrelay import Relay
from redrelay._cluster import LocalCluster
from redrelay.io.cluster import ASYNC_CLUSTER_REDIS_PY


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


def async_cluster_supported() -> bool:
    """Whether the installed redis-py runs the asyncio API on a cluster."""
    return (
        tuple(int(p) for p in redis.__version__.split(".")[:2])
        >= ASYNC_CLUSTER_REDIS_PY
    )


#: The asyncio API on a cluster needs a recent redis-py (redrelay.io.cluster); the
#: lowest run (scripts/test --lowest) checks that older ones are refused instead.
needs_async_cluster = pytest.mark.skipif(
    not async_cluster_supported(),
    reason=f"redis-py {redis.__version__}: the asyncio API on a cluster is refused",
)
