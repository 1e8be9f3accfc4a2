"""What the sync and async I/O layers share: error translation, URL redaction, options.

Both :mod:`redrelay.io.sync` and :mod:`redrelay.io.aio` translate errors with this code
and build their clients from :func:`client_options`, so a URL (TLS, Unix socket, ACL user)
means the same thing and a failure raises the same redrelay error on either side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.exceptions as rex

from ..errors import (
    BrokerError,
    BrokerFull,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)
from ..protocol.requests import Arg, Step
from .cluster import is_cluster_url, split_cluster_url

__all__ = [
    "RETRY_ON",
    "Arg",
    "check_wait",
    "IO_ERRORS",
    "client_options",
    "cluster_options",
    "cluster_setting",
    "publish_order",
    "config_value",
    "durable_commands",
    "durable_reply",
    "raise_translated",
    "redact",
    "server_version",
    "translate",
]

#: Everything a redis-py call can raise: RedisClusterException is not a RedisError.
IO_ERRORS = (rex.RedisError, rex.RedisClusterException, OSError)

#: Errors after which a command is retried (bounded by the connection's ``retries``).
RETRY_ON: list[type[Exception]] = [
    rex.ConnectionError,
    rex.TimeoutError,
    rex.BusyLoadingError,
]


def client_options(url: str, socket_timeout: float) -> dict[str, Any]:
    """Keyword arguments of ``Redis.from_url`` for both clients (the retry object aside).

    Keepalive only on TCP; a health check every 15 s catches connections that a NAT or a
    proxy dropped silently. TLS checks the server's host name on every redis-py version
    (before 6.0 redis-py did not by default); the URL's ``ssl_check_hostname=`` still wins.
    """
    tcp: dict[str, Any] = {} if url.startswith("unix:") else {"socket_keepalive": True}
    if url.startswith("rediss"):
        tcp["ssl_check_hostname"] = True
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 15,
        "retry_on_error": RETRY_ON,
        **tcp,
    }


def cluster_options(
    url: str, socket_timeout: float, retries: int
) -> tuple[str, list[tuple[str, int]], dict[str, Any], int]:
    """What both layers give ``RedisCluster.from_url``, the retry object aside.

    Returns the URL of the first node (``redis://`` or ``rediss://``, auth and query
    kept), the other nodes (startup nodes, so a client starts while the first is down),
    the keyword arguments, and how many retries the retry object should make: at least
    a few, since on a failed call the client moves to another node, and it needs that
    even to start while its default node (slot 0's) is down.
    """
    head, tail, nodes = split_cluster_url(url, redact(url))
    (host, port), others = nodes[0], nodes[1:]
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
    }
    if head.startswith("rediss"):
        options["ssl_check_hostname"] = True
    return f"{head}{host}:{port}{tail}", others, options, max(retries, 3)


def publish_order(first: Any, primaries: Sequence[Any]) -> list[Any]:
    """The cluster nodes a PUBLISH tries in turn: the default node, then the others.

    A classic PUBLISH reaches the subscribers of every node, so any node will do; the
    client would otherwise route it by the channel's slot, and fail while that one node
    is down.
    """
    return [first] + [n for n in primaries if n != first]


def cluster_setting(replies: dict[str, str | None]) -> str | None:
    """One setting as every cluster primary gave it: their common value, or
    ``node=value, ...`` when they differ (so a check for the safe value fails, and the
    text says where)."""
    values = set(replies.values())
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{node}={value}" for node, value in sorted(replies.items()))


#: URL query parameters whose values are secrets.
_SECRET_PARAMS = {"password", "ssl_password", "sentinel_password"}


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
    if "No connection available" in text or "Too many connections" in text:
        return (
            "; every pooled connection was busy: too many concurrent calls on one "
            "event loop (bound them, e.g. with a semaphore)"
        )
    if text.startswith("No master found"):
        return (
            "; no Sentinel in the URL answered (check the hosts, and sentinel_password= "
            "if they need one), or none knows that service name"
        )
    if is_cluster_url(url):
        return ""  # a node that went away: nothing to say about TLS
    tls = url.startswith("rediss://")
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
        if text.startswith("No master found"):  # then a repr of the Sentinel client
            text = text.split(" : ", 1)[0]
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
        raise _response_error(url, exc) from exc
    except rex.RedisError as exc:
        raise BrokerError(f"Redis client error for {redact(url)}: {exc}") from exc


def _response_error(url: str, exc: rex.ResponseError) -> Exception:
    """The redrelay error for an error reply that no narrower redis-py class caught."""
    text = str(exc)
    if text.startswith(("MOVED ", "ASK ")):  # redis-py < 6 parses them as plain errors
        return _redirect_error(url, exc)
    if "NOREPLICAS" in text:  # checked before the first write: nothing was written
        return BrokerUnavailable(
            f"Redis at {redact(url)} refused the write: fewer replicas are connected "
            f"than its min-replicas-to-write asks ({text}). Nothing was written; "
            "retry when the replicas are back."
        )
    if text.startswith("OOM") or "OOM command not allowed" in text:
        return BrokerFull(
            f"Redis at {redact(url)} is full (maxmemory reached): {text}. Nothing was written."
        )
    return BrokerError(f"Redis at {redact(url)} answered with an error: {text}")


def _redirect_error(url: str, exc: rex.ResponseError) -> Exception:
    """A MOVED/ASK reply that reached us: a plain client talking to a cluster node, or
    (through a cluster client, after its own retries) slots still moving."""
    if isinstance(exc, rex.AskError):
        reply = f"{type(exc).__name__.removesuffix('Error').upper()} {exc}"
    else:
        reply = str(exc)
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


def config_value(reply: Any, name: str) -> str | None:
    """The value in a ``CONFIG GET name`` reply (RESP2 list or RESP3 dict), or None."""
    if isinstance(reply, dict):
        value = reply.get(name, reply.get(name.encode()))
    elif isinstance(reply, list) and len(reply) == 2:
        value = reply[1]
    else:
        value = None
    return value.decode() if isinstance(value, bytes) else value


def raise_translated(
    url: str, exc: BaseException, namespace: str | None = None
) -> NoReturn:
    """Raise the redrelay error for a redis (or socket) error, with ``exc`` as the cause."""
    with translate(url, namespace):
        raise exc
    raise AssertionError(
        "unreachable"
    )  # pragma: no cover - translate always raises here


def server_version(hello: Any) -> tuple[int, ...]:
    """The version in a ``HELLO`` reply (a dict on RESP3, a flat list on RESP2).

    ``HELLO`` without arguments keeps the protocol as it is, and every ACL user may send
    it, unlike ``INFO``.
    """
    if isinstance(hello, list):
        hello = dict(zip(hello[::2], hello[1::2], strict=False))
    raw = hello.get(b"version", hello.get("version", b"0"))
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def check_wait(url: str, wait: Sequence[Arg], version: tuple[int, ...]) -> None:
    """Refuse ``WAITAOF`` on a server that does not have it, naming its version."""
    if wait[0] == "WAITAOF" and version < (7, 2):
        shown = ".".join(map(str, version))
        raise ConfigurationError(
            f"durable='aof' needs WAITAOF (Redis >= 7.2); Redis at "
            f"{redact(url)} is {shown}: use durable='replicas:N'"
        )


def durable_commands(step: Step, sha: str) -> list[Sequence[Arg]]:
    """A durable step's writes, then its ``WAIT``/``WAITAOF``, for one plain pipeline.

    One pipeline runs on one socket, so the wait covers these writes (WAIT counts the
    replicas that acknowledged this connection's last write). ``MULTI``/``EXEC`` is
    spelled out: a WAIT inside a transaction would not wait.
    """
    assert step.wait is not None
    if step.script is not None:
        writes: list[Sequence[Arg]] = [
            ("EVALSHA", sha, len(step.keys), *step.keys, *step.args)
        ]
    elif step.transaction:
        writes = [("MULTI",), *step.commands, ("EXEC",)]
    else:
        writes = list(step.commands)
    return [*writes, step.wait]


def durable_reply(replies: Sequence[Any]) -> tuple[Any, Any]:
    """``(reply of the write, reply of the wait)`` from :func:`durable_commands`' replies;
    raises the first error reply."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies[-2], replies[-1]
