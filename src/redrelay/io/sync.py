"""Blocking I/O on redis-py: connections, script calls and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..errors import (
    BrokerError,
    BrokerFull,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)
from ..protocol.scripts import script

try:  # redis[hiredis]: pack in C (redis-py's packer adds a Python pass over every argument)
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis = None  # type: ignore[assignment]

__all__ = ["Connection", "Pending", "raise_translated", "redact", "translate"]

Arg = str | bytes | int | float


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


def raise_translated(
    url: str, exc: BaseException, namespace: str | None = None
) -> NoReturn:
    """Raise the redrelay error for a redis (or socket) error, with ``exc`` as the cause."""
    with translate(url, namespace):
        raise exc
    raise AssertionError(
        "unreachable"
    )  # pragma: no cover - translate always raises here


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

    @property
    def client(self) -> redis.Redis:
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
        except (rex.RedisError, OSError) as exc:
            # try/except rather than ``with translate()``: the context manager costs
            # about 2 us per call, which shows on the put and publish hot paths.
            raise_translated(self.url, exc, self.namespace)

    def send(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Pending:
        """Send a protocol script call on a connection of its own; read its reply later.

        The worker sends its next fetch before it runs the batch in hand, so that Redis
        works while Python does. The connection stays out of the pool until
        :meth:`Pending.result` (or :meth:`Pending.discard`).
        """
        pool = self.client.connection_pool
        try:
            connection: Any = pool.get_connection()
        except (rex.RedisError, OSError) as exc:
            raise_translated(self.url, exc, self.namespace)
        pending = Pending(self, pool, connection, name, keys, args)
        command = ("EVALSHA", script(name).sha, len(keys), *keys, *args)
        try:
            if _hiredis is None:
                connection.send_command(*command)
            else:
                packed = _hiredis.pack_command(command)  # type: ignore[arg-type]
                connection.send_packed_command([packed])
        except (rex.RedisError, OSError) as exc:
            pending.discard()
            raise_translated(self.url, exc, self.namespace)
        return pending

    def call(self, *command: Arg) -> Any:
        """One plain Redis command."""
        try:
            return self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except (rex.RedisError, OSError) as exc:
            raise_translated(self.url, exc, self.namespace)

    def config_get(self, name: str) -> str | None:
        """One server setting (CONFIG GET), or None if the server does not say."""
        reply = self.call("CONFIG", "GET", name)
        if isinstance(reply, dict):
            value = reply.get(name, reply.get(name.encode()))
        elif isinstance(reply, list) and len(reply) == 2:
            value = reply[1]
        else:
            value = None
        return value.decode() if isinstance(value, bytes) else value

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())


class Pending:
    """The reply of a script call sent by :meth:`Connection.send`, not read yet."""

    __slots__ = ("_args", "_connection", "_keys", "_name", "_owner", "_pool")

    def __init__(
        self,
        owner: Connection,
        pool: Any,
        connection: Any,
        name: str,
        keys: Sequence[str],
        args: Sequence[Arg],
    ) -> None:
        self._owner, self._pool = owner, pool
        self._connection: Any = connection
        self._name, self._keys, self._args = name, keys, args

    def result(self) -> Any:
        """Wait for the reply (once). Raises like :meth:`Connection.run`.

        A lost reply leaves it unknown whether the script ran: the caller decides (fetch
        is sent again under the same tags, and then hands back what the lost call took).
        """
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("the reply was already read or discarded")
        owner = self._owner
        try:
            try:
                return connection.read_response()
            except rex.NoScriptError:  # a restarted or flushed server: load it now
                s = script(self._name)
                connection.send_command(
                    "EVAL", s.source, len(self._keys), *self._keys, *self._args
                )
                return connection.read_response()
        except (rex.RedisError, OSError) as exc:
            if not isinstance(exc, rex.ResponseError):
                connection.disconnect()
            raise_translated(owner.url, exc, owner.namespace)
        finally:
            self._pool.release(connection)

    def discard(self) -> None:
        """Drop the connection without reading the reply (the call may still run)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)
