"""A TCP fault proxy: forwards 127.0.0.1:<port> to an upstream, and breaks on demand.

::

    with FaultProxy(("127.0.0.1", redis_port)) as proxy:
        relay = Relay(proxy.url)
        proxy.cut()            # a network partition: every byte is silently dropped
        proxy.heal()           # the partition ends; the dead connections are reset
        proxy.reset_next("reply")   # the next reply never arrives: the connection resets

Two threads per connection (one per direction) with blocking sockets, so back-pressure
is the kernel's. Faults:

- ``cut()`` (blackhole): existing connections stay open but carry nothing, both ways;
  new connections are accepted and carry nothing either. Like a partition, nobody gets
  an error: a client only notices through its own timeouts. ``heal()`` resets the
  blackholed connections (their byte streams lost data, they cannot resume) and forwards
  new ones again.
- ``cut(refuse=True)``: every connection is reset now, and new ones are reset at once.
- ``reset_next("request" | "reply")``: the next chunk in that direction is dropped and
  its connection reset — "request": the server never sees the command; "reply": the
  server ran it, the client never learns the outcome.
- ``lose_reply_to(pattern)``: the next request containing ``pattern`` (say, a Lua
  script's SHA) reaches the server, and its reply is dropped: a targeted lost reply.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

__all__ = ["FaultProxy"]

_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


def _reset(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    with contextlib.suppress(OSError):
        # Wakes a thread blocked in recv() on it (close() alone would not), sends nothing.
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One proxied connection: the client's socket and, unless blackholed, the upstream's."""

    def __init__(
        self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket | None
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.blackholed = upstream is None
        self.closed = False
        self.lose_reply = False

    def start(self) -> None:
        threading.Thread(
            target=self._pump,
            args=(self.client, self.upstream, "request"),
            daemon=True,
            name="fault-proxy-request",
        ).start()
        if self.upstream is not None:
            threading.Thread(
                target=self._pump,
                args=(self.upstream, self.client, "reply"),
                daemon=True,
                name="fault-proxy-reply",
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket | None, direction: str
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.blackholed or dst is None:
                    continue  # dropped on the floor
                if self.proxy._take_fault(direction) or (
                    direction == "reply" and self.lose_reply
                ):
                    self.proxy.faults_fired += 1
                    break
                if direction == "request" and self.proxy._take_pattern(data):
                    self.lose_reply = True
                dst.sendall(data)
        except OSError:
            pass
        self.reset()

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        _reset(self.client)
        _reset(self.upstream)
        self.proxy._forget(self)


class FaultProxy:
    """A TCP forwarder to ``upstream`` on 127.0.0.1 (a free port) that fails on demand."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._mode = "open"  # "open", "blackhole" or "refuse"
        self._armed: dict[str, int] = {"request": 0, "reply": 0}
        self._patterns: list[bytes] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, daemon=True, name="fault-proxy-accept"
        )
        #: Connections accepted, and one-shot faults that fired.
        self.accepted = 0
        self.faults_fired = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._links)

    # -- faults ------------------------------------------------------------------------

    def cut(self, *, refuse: bool = False) -> None:
        """Partition: blackhole every connection (or, with ``refuse``, reset them all)."""
        with self._lock:
            self._mode = "refuse" if refuse else "blackhole"
            links = list(self._links)
            for link in links:
                link.blackholed = True
        if refuse:
            for link in links:
                link.reset()

    def heal(self) -> None:
        """End the partition: reset the blackholed connections, forward new ones."""
        with self._lock:
            self._mode = "open"
            dead = [link for link in self._links if link.blackholed]
        for link in dead:
            link.reset()

    def reset_next(self, direction: str, count: int = 1) -> None:
        """Drop the next ``count`` chunks going ``direction`` and reset their connections."""
        if direction not in self._armed:
            raise ValueError(
                f"direction must be 'request' or 'reply', not {direction!r}"
            )
        with self._lock:
            self._armed[direction] += count

    def lose_reply_to(self, pattern: bytes) -> None:
        """Forward the next request that contains ``pattern``, then drop its reply and
        reset the connection."""
        with self._lock:
            self._patterns.append(pattern)

    def disarm(self) -> None:
        with self._lock:
            self._armed = {"request": 0, "reply": 0}
            self._patterns = []

    def _take_pattern(self, data: bytes) -> bool:
        with self._lock:
            for pattern in self._patterns:
                if pattern in data:
                    self._patterns.remove(pattern)
                    return True
            return False

    def _take_fault(self, direction: str) -> bool:
        with self._lock:
            if self._armed[direction] > 0:
                self._armed[direction] -= 1
                return True
            return False

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset()

    # -- plumbing ----------------------------------------------------------------------

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.accepted += 1
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                _reset(client)
                continue
            upstream = None
            if mode == "open":
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    _reset(client)
                    continue
            for sock in (client, upstream):
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                if self._mode != "open" and upstream is not None:
                    link.blackholed = True  # a cut came in between
                self._links.add(link)
            link.start()
