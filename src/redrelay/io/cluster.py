"""Redis Cluster URLs: ``redis+cluster://[auth@]host:port[,host:port...][/db][?query]``.

Pure parsing (no redis import), shared by the URL check in :mod:`redrelay.config` and
the I/O layers. An explicit scheme rather than autodetection: detecting
``cluster_enabled:1`` would cost a round trip on every new connection.
"""

from __future__ import annotations

from ..errors import ConfigurationError

__all__ = ["CLUSTER_SCHEMES", "is_cluster_url", "split_cluster_url"]

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
