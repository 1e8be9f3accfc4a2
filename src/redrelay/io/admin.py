"""One raw connection to one server, for the tools that manage a ``redis-server``.

The embedded server, the test servers and the local cluster need to ping, inspect and
shut down a server, often while it starts, loads its data or dies. They get one
redis-py connection each: no pool, no retries, no health checks, and replies as
Redis sent them (RESP2, no response callbacks: ``PING`` answers ``b"PONG"``, ``INFO``
is text), with redis-py's errors translated to redrelay's.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import BrokerError, BrokerLoading, BrokerUnavailable, ConfigurationError
from ._shared import redact

__all__ = ["AdminClient", "answers", "listening"]


class AdminClient:
    """A blocking client on one connection (ping, info, shutdown, scan).

    :param url: ``unix:///path/to.sock``, ``redis://host:port`` or ``rediss://``.
    :param timeout: connect and read timeout in seconds.
    :raises BrokerUnavailable: when the server cannot be reached.
    :raises ConfigurationError: when the URL is not a Redis URL.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        try:
            pool = redis.ConnectionPool.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                protocol=2,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"unsupported URL {redact(url)!r}: use unix://, redis:// or rediss:// ({exc})"
            ) from None
        self.url = url
        self._conn: Any = pool.connection_class(**pool.connection_kwargs)
        try:
            self._conn.connect()
        except BaseException as exc:
            self._conn.disconnect()
            if isinstance(exc, (rex.RedisError, OSError)):
                raise self._translate(exc, f"cannot connect to {redact(url)}") from exc
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.disconnect()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def command(self, *args: str | bytes | int) -> Any:
        """Send one command and return its reply (bytes, int, None or a list of them).

        :raises BrokerLoading: when Redis is still loading its data set.
        :raises BrokerError: for any other error reply.
        :raises BrokerUnavailable: when the connection breaks.
        """
        try:
            self._conn.send_command(*args, check_health=False)
            return self._conn.read_response()
        except rex.AuthenticationError as exc:
            # a NOAUTH reply: the server answered (redis-py makes it a ConnectionError,
            # which made terminate() wait for a SHUTDOWN that was refused)
            raise BrokerError(str(exc)) from exc
        except (rex.RedisError, OSError) as exc:
            raise self._translate(
                exc, f"connection to {redact(self.url)} failed"
            ) from exc

    def info(self, section: str = "server") -> dict[str, str]:
        """``INFO section`` parsed into a dict of strings."""
        reply = self.command("INFO", section)
        text = reply.decode() if isinstance(reply, bytes) else ""
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def _translate(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, rex.BusyLoadingError):
            return BrokerLoading(str(exc))
        if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError)):
            self._conn.disconnect()
            return BrokerUnavailable(f"{what}: {exc}")
        return BrokerError(str(exc))


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a server at ``url`` answers PING (a loading server does not count)."""
    try:
        with AdminClient(url, timeout=timeout) as client:
            return bool(client.command("PING") == b"PONG")
    except (BrokerUnavailable, BrokerError):
        return False


def listening(url: str) -> bool:
    """Whether anything accepts connections at ``url`` (a stale socket file refuses)."""
    try:
        AdminClient(url, timeout=1.0).close()
    except BrokerUnavailable:
        return False
    return True
