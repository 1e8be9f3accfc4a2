"""Redis Cluster URLs: ``redis+cluster://[auth@]host:port[,host:port...][/db][?query]``.

Pure parsing (no redis import), shared by the URL check in :mod:`redrelay.config` and
the I/O layers. An explicit scheme rather than autodetection: detecting
``cluster_enabled:1`` would cost a round trip on every new connection.
"""

from __future__ import annotations

from ..errors import ConfigurationError

__all__ = [
    "ASYNC_CLUSTER_REDIS_PY",
    "CLUSTER_SCHEMES",
    "check_async_cluster",
    "is_cluster_url",
    "split_cluster_url",
]

#: The lowest redis-py whose ``redis.asyncio`` cluster client runs redrelay's asyncio
#: API: older ones refuse transactions in cluster mode (5.x), warn on the retry options
#: (6.x) or cannot start while the first node is down (7.x). The sync API runs on the
#: whole range that pyproject.toml allows.
ASYNC_CLUSTER_REDIS_PY = (8, 0)

#: URL schemes that select Redis Cluster.
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` selects Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.startswith(CLUSTER_SCHEMES)


def split_cluster_url(
    url: str, shown: str | None = None
) -> tuple[str, str, list[tuple[str, int]]]:
    """``redis+cluster://[auth@]h1:p1,h2:p2/0?q`` -> (``redis://[auth@]``, ``/0?q``, nodes).

    ``shown`` is the URL as error messages may show it (passwords redacted).
    """
    scheme, _, rest = url.partition("://")
    rest, mark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(
                f"invalid Redis Cluster URL {shown or '(redacted)'!r}: each node must be host:port"
            )
        nodes.append((name, int(port)))
    base = scheme.removesuffix("+cluster")
    return f"{base}://{auth}{at}", f"{slash}{path}{mark}{query}", nodes


def check_async_cluster(url: str, redis_py: str) -> None:
    """Refuse the asyncio API on a cluster URL with a redis-py older than
    :data:`ASYNC_CLUSTER_REDIS_PY` (``redis_py``: its ``__version__``)."""
    if not is_cluster_url(url):
        return
    parts = []
    for part in redis_py.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < ASYNC_CLUSTER_REDIS_PY:
        need = ".".join(map(str, ASYNC_CLUSTER_REDIS_PY))
        raise ConfigurationError(
            f"the asyncio API on Redis Cluster needs redis-py >= {need}, and redis-py "
            f"{redis_py} is installed: upgrade it (pip install 'redis>={need}'), or use "
            "the sync API, which works with it"
        )
