"""Just enough RESP over a raw socket to ping, shut down and inspect a redis-server.

Used by :mod:`redrelay._server` and :mod:`redrelay.embedded`, which must work before
(and without) a redis-py client.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import TypeAlias
from urllib.parse import unquote, urlsplit

from .errors import BrokerError, BrokerLoading, BrokerUnavailable, ConfigurationError

__all__ = ["RespClient", "RespValue", "listening"]

#: A decoded RESP2 reply: simple strings and bulk strings stay bytes.
RespValue: TypeAlias = "bytes | int | None | list[RespValue]"


class RespClient:
    """A minimal blocking RESP2 client on one socket (ping, info, shutdown, scan).

    :param url: ``unix:///path/to.sock`` or ``redis://host:port`` (no auth, no TLS).
    :param timeout: connect and read timeout in seconds.
    :raises BrokerUnavailable: when the server cannot be reached.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        sock: socket.socket
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = unquote(parts.path)
        elif parts.scheme == "redis":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        else:
            raise ConfigurationError(
                f"unsupported URL {url!r}: use unix:// or redis://"
            )
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise BrokerUnavailable(f"cannot connect to {url}: {exc}") from exc
        self.url = url
        self._sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        """Close the socket."""
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> RespClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def command(self, *args: str | bytes | int) -> RespValue:
        """Send one command and return its reply.

        :raises BrokerLoading: when Redis is still loading its data set.
        :raises BrokerError: for any other error reply.
        :raises BrokerUnavailable: when the connection breaks.
        """
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        try:
            self._sock.sendall(b"".join(parts))
            return self._read()
        except OSError as exc:
            raise BrokerUnavailable(f"connection to {self.url} failed: {exc}") from exc

    def _read(self) -> RespValue:
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise BrokerUnavailable(f"connection to {self.url} closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            message = rest.decode(errors="replace")
            if message.startswith("LOADING"):
                raise BrokerLoading(message)
            raise BrokerError(message)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._reader.read(size + 2)
            if len(data) != size + 2:
                raise BrokerUnavailable(f"connection to {self.url} closed")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise BrokerError(f"unexpected reply from {self.url}: {line!r}")

    def info(self, section: str = "server") -> dict[str, str]:
        """``INFO section`` parsed into a dict of strings."""
        reply = self.command("INFO", section)
        text = reply.decode() if isinstance(reply, bytes) else ""
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}


def _answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a server at ``url`` answers PING (a loading server does not count)."""
    try:
        with RespClient(url, timeout=timeout) as client:
            return client.command("PING") == b"PONG"
    except (BrokerUnavailable, BrokerError):
        return False


def listening(url: str) -> bool:
    """Whether anything accepts connections at ``url`` (a stale socket file refuses)."""
    try:
        RespClient(url, timeout=1.0).close()
    except BrokerUnavailable:
        return False
    return True
