"""Blocking I/O on redis-py: connections, script calls and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from ..config import CLUSTER_SCHEMES
from ..errors import (
    BrokerError,
    BrokerFull,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)
from ..protocol.scripts import script

__all__ = [
    "CLUSTER_SCHEMES",
    "Connection",
    "is_cluster_url",
    "raise_translated",
    "redact",
    "translate",
]

Arg = str | bytes | int | float

#: Everything a redis-py call can raise: RedisClusterException is not a RedisError.
_ERRORS = (rex.RedisError, rex.RedisClusterException, OSError)


#: URL query parameters whose values are secrets.
_SECRET_PARAMS = {"password", "ssl_password"}


def redact(url: str) -> str:
    """The URL without its passwords (``user:password@`` and ``?password=``), for logs."""
    parts = urlsplit(url)
    if parts.password is None and not _SECRET_PARAMS & {
        k for k, _ in parse_qsl(parts.query)
    }:
        return url  # untouched: urlunsplit would turn unix:///path into unix:/path
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(k, "***" if k in _SECRET_PARAMS else v) for k, v in pairs]
        parts = parts._replace(query=urlencode(hidden, safe="*/:"))
    return urlunsplit(parts)


def _unreachable_hint(url: str, text: str) -> str:
    """A next step for the usual TLS mix-ups, read off the error text."""
    tls = url.startswith(("rediss://", "rediss+cluster://"))
    if is_cluster_url(url):
        return ""  # a node that went away: nothing to say about TLS
    if not tls and ("reset by peer" in text or "Connection closed by server" in text):
        return "; if the server expects TLS, use a rediss:// URL"
    if tls and ("certificate required" in text or "EOF occurred in violation" in text):
        return (
            "; the server may require a client certificate: add ssl_certfile= and "
            "ssl_keyfile= to the URL's query"
        )
    if tls and ("Timeout" in text or "timed out" in text or "WRONG_VERSION" in text):
        return "; is this port speaking TLS? a plain Redis port needs a redis:// URL"
    return ""


@contextlib.contextmanager
def translate(url: str, namespace: str | None = None) -> Iterator[None]:
    """Re-raise redis errors as redrelay errors, keeping the cause."""
    try:
        yield
    except (rex.ClusterDownError, rex.TryAgainError, rex.SlotNotCoveredError) as exc:
        raise BrokerUnavailable(
            f"Redis Cluster at {redact(url)} cannot serve the request now ({exc}); "
            "a node is down or slots are moving"
        ) from exc
    except rex.AskError as exc:  # MovedError too
        raise _redirect_error(url, exc) from exc
    except rex.RedisClusterException as exc:
        raise _cluster_error(url, exc) from exc
    except rex.BusyLoadingError as exc:
        raise BrokerLoading(
            f"Redis at {redact(url)} is loading its data set; try again shortly"
        ) from exc
    except rex.AuthenticationError as exc:
        raise BrokerUnavailable(
            f"Redis at {redact(url)} refused the credentials ({exc}); check the user and password in the URL"
        ) from exc
    except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
        text = str(exc)
        raise BrokerUnavailable(
            f"cannot reach Redis at {redact(url)}: {text}{_unreachable_hint(url, text)}"
        ) from exc
    except rex.OutOfMemoryError as exc:  # redis-py strips the "OOM" prefix of the reply
        raise BrokerFull(
            f"Redis at {redact(url)} is full (maxmemory reached): {exc}. Nothing was written."
        ) from exc
    except rex.NoPermissionError as exc:
        ns = namespace or "<namespace>"
        raise BrokerError(
            f"Redis at {redact(url)} refused a command ({exc}): the user needs the keys "
            f"~{ns}:*, the channels &{ns}:* (and &{ns}:<pattern> for each pattern "
            "subscription) and the commands listed in docs/security.md"
        ) from exc
    except rex.ResponseError as exc:
        text = str(exc)
        if text.startswith("OOM") or "OOM command not allowed" in text:
            raise BrokerFull(
                f"Redis at {redact(url)} is full (maxmemory reached): {text}. Nothing was written."
            ) from exc
        raise BrokerError(
            f"Redis at {redact(url)} answered with an error: {text}"
        ) from exc
    except rex.RedisError as exc:
        raise BrokerError(f"Redis client error for {redact(url)}: {exc}") from exc


def _redirect_error(url: str, exc: rex.AskError) -> Exception:
    """A MOVED/ASK reply that reached us: a plain client talking to a cluster node, or
    (through a cluster client, after its own retries) slots still moving."""
    reply = f"{type(exc).__name__.removesuffix('Error').upper()} {exc}"
    if is_cluster_url(url):
        return BrokerUnavailable(
            f"Redis Cluster at {redact(url)} keeps redirecting ({reply}): slots are moving"
        )
    return ConfigurationError(
        f"Redis at {redact(url)} is a Redis Cluster node (it answered {reply}); "
        "use a redis+cluster:// URL"
    )


def _cluster_error(url: str, exc: BaseException) -> Exception:
    """The redrelay error for a redis-py cluster client error (it is no RedisError)."""
    text = str(exc)
    if "not enabled" in text:
        return ConfigurationError(
            f"Redis at {redact(url)} is not a Redis Cluster ({text}); use a redis:// URL"
        )
    if "cannot be connected" in text or "reachable" in text:
        return BrokerUnavailable(f"cannot reach Redis Cluster at {redact(url)}: {text}")
    return BrokerError(f"Redis Cluster client error for {redact(url)}: {text}")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` selects Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.startswith(CLUSTER_SCHEMES)


def _split_cluster_url(url: str) -> tuple[str, str, list[tuple[str, int]]]:
    """``redis+cluster://[auth@]h1:p1,h2:p2/0?q`` -> (``redis://[auth@]``, ``/0?q``, nodes)."""
    scheme, _, rest = url.partition("://")
    rest, mark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(
                f"invalid Redis Cluster URL {redact(url)!r}: each node must be host:port"
            )
        nodes.append((name, int(port)))
    base = scheme.removesuffix("+cluster")
    return f"{base}://{auth}{at}", f"{slash}{path}{mark}{query}", nodes


def raise_translated(
    url: str, exc: BaseException, namespace: str | None = None
) -> NoReturn:
    """Raise the redrelay error for a redis (or socket) error, with ``exc`` as the cause."""
    with translate(url, namespace):
        raise exc
    raise AssertionError(
        "unreachable"
    )  # pragma: no cover - translate always raises here


def _config_value(reply: Any, name: str) -> str | None:
    if isinstance(reply, dict):
        value = reply.get(name, reply.get(name.encode()))
    elif isinstance(reply, list) and len(reply) == 2:
        value = reply[1]
    else:
        value = None
    return value.decode() if isinstance(value, bytes) else value


class Connection:
    """A lazily opened redis-py client for one URL, plus script calls by name.

    ``retries`` bounds how often a command is retried on a connection error before
    :class:`BrokerUnavailable` reaches the caller (producers); workers loop on their own.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        socket_timeout: float = 10.0,
        namespace: str | None = None,
    ) -> None:
        self.url = url
        #: Named in permission errors (the ACL rules the namespace needs).
        self.namespace = namespace
        self._retries = retries
        self._socket_timeout = socket_timeout
        self._client: redis.Redis | None = None
        #: Whether the URL selects Redis Cluster (the client is then a RedisCluster).
        self.is_cluster = is_cluster_url(url)

    @property
    def client(self) -> redis.Redis:
        """The redis-py client: a ``redis.Redis``, or a ``RedisCluster`` that routes each
        command to the node of its keys (typed as Redis: they share the command API)."""
        if self._client is None and self.is_cluster:
            self._client = self._cluster_client()
        if self._client is None:
            try:
                tcp: dict[str, Any] = (
                    {} if self.url.startswith("unix:") else {"socket_keepalive": True}
                )
                self._client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=5.0,
                    health_check_interval=15,
                    **tcp,
                    retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), self._retries),
                    retry_on_error=[
                        rex.ConnectionError,
                        rex.TimeoutError,
                        rex.BusyLoadingError,
                    ],
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"invalid Redis URL {redact(self.url)!r}: {exc}"
                ) from exc
        return self._client

    def _cluster_client(self) -> Any:
        head, tail, nodes = _split_cluster_url(self.url)
        (host, port), others = nodes[0], nodes[1:]
        try:
            return RedisCluster.from_url(
                f"{head}{host}:{port}{tail}",
                startup_nodes=[ClusterNode(h, p) for h, p in others],  # type: ignore[no-untyped-call]
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=5.0,
                socket_keepalive=True,
                # At least a few: on a failed call the client moves to another node, and
                # it needs that even to start while its default node (slot 0's) is down.
                retry=Retry(
                    ExponentialBackoff(cap=1.0, base=0.05), max(self._retries, 3)
                ),
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redact(self.url)!r}: {exc}"
            ) from exc
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    def time_ms(self, key: str | None = None) -> int:
        """The server's clock in ms (on a cluster: of the node that holds ``key``, whose
        clock the lease scripts of that key's queue use)."""
        try:
            if self.is_cluster and key is not None:
                node = self.client.get_node_from_key(key)  # type: ignore[attr-defined]
                reply = self.client.execute_command("TIME", target_nodes=node)  # type: ignore[no-untyped-call]
            else:
                reply = self.client.execute_command("TIME")  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    def publish(self, channel: str, data: bytes) -> int:
        """PUBLISH; on a cluster through the default node, else the next live primary.

        A classic PUBLISH reaches the subscribers of every node, so any node will do; the
        client would otherwise route it by the channel's slot, and fail while that one
        node is down.
        """
        if not self.is_cluster:
            return int(self.call("PUBLISH", channel, data))
        client: Any = self.client
        try:
            first = client.get_default_node()
            nodes = [first] + [n for n in client.get_primaries() if n != first]
            for node in nodes:
                try:
                    receivers = client.execute_command(
                        "PUBLISH", channel, data, target_nodes=node
                    )
                except (rex.ConnectionError, rex.TimeoutError):
                    if node is nodes[-1]:
                        raise
                    continue
                if node is not first:
                    client.replace_default_node(node)
                return int(receivers)
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        raise AssertionError(
            "unreachable"
        )  # pragma: no cover - the loop returns or raises

    def node_tags(self, prefix: str) -> list[str]:
        """On a cluster, one hash tag ``<prefix><n>`` per primary, held by that node."""
        owners: dict[str, str] = {}
        try:
            primaries = {n.name for n in self.client.get_primaries()}  # type: ignore[attr-defined]
            slots = self.client.nodes_manager.slots_cache  # type: ignore[attr-defined]
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        n = 0
        while len(owners) < len(primaries) and n < 100_000:
            tag = f"{prefix}{n}"
            nodes = slots.get(key_slot(tag.encode()))
            if nodes:
                owners.setdefault(nodes[0].name, tag)
            n += 1
        return sorted(owners.values())

    def subscriber_connection(self, turn: int = 0) -> Any:
        """A bare redis-py connection (RESP2, not connected yet) for SUBSCRIBE.

        On a cluster, classic PUBLISH reaches every node, so one node is enough: ``turn``
        picks it in rotation, so a listener that lost its node tries the next one.
        """
        try:
            if self.is_cluster:
                nodes = sorted(self.client.get_primaries(), key=lambda n: n.name)  # type: ignore[attr-defined]
                node = self.client.get_redis_connection(nodes[turn % len(nodes)])  # type: ignore[attr-defined]
                pool = node.connection_pool
            else:
                pool = self.client.connection_pool
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        return pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a protocol script by name (EVALSHA, loading it on the first NOSCRIPT)."""
        s = script(name)
        try:
            try:
                return self.client.evalsha(s.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                return self.client.eval(s.source, len(keys), *keys, *args)
        except _ERRORS as exc:
            # try/except rather than ``with translate()``: the context manager costs
            # about 2 us per call, which shows on the put and publish hot paths.
            raise_translated(self.url, exc, self.namespace)

    def call(self, *command: Arg) -> Any:
        """One plain Redis command."""
        try:
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)

    def config_get(self, name: str) -> str | None:
        """One server setting (CONFIG GET), or None if the server does not say.

        On a cluster every primary is asked: their common value, or ``node=value, ...``
        when they differ (so a check for the safe value fails, and the text says where).
        """
        if not self.is_cluster:
            return _config_value(self.call("CONFIG", "GET", name), name)
        try:
            primaries = self.client.get_primaries()  # type: ignore[attr-defined]
            replies = {
                node.name: _config_value(
                    self.client.execute_command(
                        "CONFIG", "GET", name, target_nodes=node
                    ),  # type: ignore[no-untyped-call]
                    name,
                )
                for node in primaries
            }
        except _ERRORS as exc:
            raise_translated(self.url, exc, self.namespace)
        values = set(replies.values())
        if len(values) == 1:
            return values.pop()
        return ", ".join(f"{node}={value}" for node, value in sorted(replies.items()))

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())
