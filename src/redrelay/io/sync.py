"""Blocking I/O on redis-py: connections, script calls and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rex
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from ..errors import (
    BrokerError,
    BrokerFull,
    BrokerLoading,
    BrokerUnavailable,
    ConfigurationError,
)
from ..protocol.scripts import SCRIPT_NAMES, script
from .sentinel import SCHEME as SENTINEL_SCHEME
from .sentinel import parse_sentinel_url

__all__ = ["Connection", "raise_translated", "redact", "translate"]

Arg = str | bytes | int | float


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
    if text.startswith("No master found"):
        return (
            "; no Sentinel in the URL answered (check the hosts, and sentinel_password= "
            "if they need one), or none knows that service name"
        )
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


def _sentinel_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the service's current primary, as the Sentinels name it.

    Every new socket asks the Sentinels where the primary is, so after a failover the
    next reconnect (redis-py retries on the connection error, or on the ``READONLY``
    reply of a demoted primary) reaches the new one.
    """
    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    sentinel_options: dict[str, Any] = {
        "socket_timeout": min(2.0, options["socket_timeout"]),
        "socket_connect_timeout": 2.0,
        "retry": Retry(NoBackoff(), 0),  # the next Sentinel is the retry
        "username": parsed.sentinel_username,
        "password": parsed.sentinel_password,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=sentinel_options
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )
    return client


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
        #: Redis < 7 gets scripts without their shebang (decided on the first NOSCRIPT).
        self._legacy_scripts: bool | None = None
        self._version: tuple[int, ...] | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            try:
                tcp: dict[str, Any] = (
                    {} if self.url.startswith("unix:") else {"socket_keepalive": True}
                )
                options: dict[str, Any] = dict(
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
                if self.url.startswith(SENTINEL_SCHEME):
                    self._client = _sentinel_client(self.url, options)
                else:
                    self._client = redis.Redis.from_url(self.url, **options)
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
        sha, source = script(name).for_server(self._legacy_scripts is True)
        try:
            try:
                return self.client.evalsha(sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                if self._legacy_scripts is None:  # first load: which dialect?
                    self._legacy_scripts = self.server_version() < (7, 0)
                    sha, source = script(name).for_server(self._legacy_scripts)
                return self.client.eval(source, len(keys), *keys, *args)
        except (rex.RedisError, OSError) as exc:
            # try/except rather than ``with translate()``: the context manager costs
            # about 2 us per call, which shows on the put and publish hot paths.
            raise_translated(self.url, exc, self.namespace)

    def server_version(self) -> tuple[int, ...]:
        """The server's version, asked once per connection.

        By ``HELLO`` (no arguments: the protocol stays as it is), which every ACL user may
        send, unlike ``INFO``.
        """
        if self._version is None:
            reply = self.call("HELLO")
            if isinstance(reply, list):
                reply = dict(zip(reply[::2], reply[1::2], strict=False))
            raw = reply.get(b"version", reply.get("version", b"0"))
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            self._version = tuple(int(p) for p in text.split(".")[:3] if p.isdigit())
        return self._version

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

    def script_command(
        self, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> tuple[Arg, ...]:
        """``EVALSHA`` of a protocol script, for :meth:`write_and_wait`."""
        sha, _ = script(name).for_server(self._legacy_scripts is True)
        return ("EVALSHA", sha, len(keys), *keys, *args)

    def write_and_wait(
        self, commands: Sequence[Sequence[Arg]], wait: Sequence[Arg]
    ) -> tuple[list[Any], Any]:
        """Writes, then ``WAIT``/``WAITAOF``, in one non-transactional pipeline.

        One pipeline runs on one socket, so the wait covers these writes (WAIT counts
        the replicas that acknowledged this connection's last write). A ``NOSCRIPT``
        loads the scripts and sends it all again. Returns (write replies, wait reply).
        """
        if wait[0] == "WAITAOF" and self.server_version() < (7, 2):
            shown = ".".join(map(str, self.server_version()))
            raise ConfigurationError(
                f"durable='aof' needs WAITAOF (Redis >= 7.2); Redis at "
                f"{redact(self.url)} is {shown}: use durable='replicas:N'"
            )
        for attempt in range(2):
            try:
                pipe = self.client.pipeline(transaction=False)
                for command in (*commands, wait):
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                replies = list(pipe.execute(raise_on_error=False))
                if attempt == 0 and any(
                    isinstance(r, rex.NoScriptError) for r in replies
                ):
                    commands = self._load_scripts(commands)
                    continue
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
            except (rex.RedisError, OSError) as exc:
                raise_translated(self.url, exc, self.namespace)
            return replies[:-1], replies[-1]
        raise AssertionError("unreachable")  # pragma: no cover

    def _load_scripts(self, commands: Sequence[Sequence[Arg]]) -> list[Sequence[Arg]]:
        """Load the scripts ``commands`` call; return them with this server's SHAs."""
        if self._legacy_scripts is None:
            self._legacy_scripts = self.server_version() < (7, 0)
        dialect: dict[Arg, tuple[str, str]] = {}
        for name in SCRIPT_NAMES:
            s = script(name)
            dialect[s.sha] = dialect[s.legacy_sha] = s.for_server(self._legacy_scripts)
        out: list[Sequence[Arg]] = []
        for command in commands:
            if command[0] == "EVALSHA" and command[1] in dialect:
                sha, source = dialect[command[1]]
                self.client.script_load(source)
                command = ("EVALSHA", sha, *command[2:])
            out.append(command)
        return out

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, transaction: bool = True
    ) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``)."""
        with translate(self.url, self.namespace):
            pipe = self.client.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return list(pipe.execute())
