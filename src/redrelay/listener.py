"""The listener: one thread and one connection run every channel subscriber of a process.

Pub/sub is at-most-once, so loss is made visible instead of silent:

- every publisher stamps a sequence number per channel (:mod:`redrelay.channel`), and
  the :class:`Listener` reports a :class:`GapReport` when a number is skipped;
- after a reconnect the listener reports a gap for each subscription, because whatever
  was published while it was away is gone (the next sequence gap tells how much);
- a subscriber whose queue is full drops messages and reports that too.

A report is logged (one WARNING line on the ``redrelay.channel`` logger), counted
(``Listener.gaps``) and passed to ``Relay(on_gap=...)``. Users who cannot lose events
use a topic. Layout: this module reads and sorts; :mod:`redrelay._subscriber` runs
each subscriber; :mod:`redrelay.gaps` decodes and reports gaps.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._subscriber import _STOP, DEFAULT_QUEUE_SIZE, _bounded, _Worker
from .errors import ConfigurationError, RedrelayError
from .gaps import DROP_REPORT_INTERVAL as DROP_REPORT_INTERVAL
from .gaps import MAX_TRACKED_PUBLISHERS as MAX_TRACKED_PUBLISHERS
from .gaps import GapReport, _GapReporting
from .handlers import HandlerContext, Subscriber
from .io.sync import translate
from .protocol.keys import channel_key, validate_name

if TYPE_CHECKING:
    from .relay import Relay
    from .worker.aioloop import LoopThread

__all__ = ["GapReport", "Listener"]

log = logging.getLogger("redrelay.channel")

#: While Redis stays unreachable, the listener logs a WARNING this often (seconds).
STILL_DOWN_WARNING_INTERVAL = 60.0

_MAX_NAMES = 10_000


class _Lost(Exception):
    """The subscription connection is gone or unresponsive."""


class Listener(_GapReporting):
    """Runs channel subscribers: one thread and one connection for all of them.

    The listener thread only reads and sorts: each subscriber has its own thread and a
    bounded queue, so a slow handler never delays the others or the reading. When a
    queue is full, new messages for that subscriber are dropped and reported as a gap
    ("subscriber too slow"). A handler's failure (any ``BaseException``, even
    ``SystemExit``) is logged at ERROR with its traceback and passed to
    ``relay.on_failure``; the subscriber goes on with the next message.
    ``async def`` handlers run as coroutines on one event loop thread (``aio``, the
    worker's, else the listener's own), up to each subscriber's ``concurrency`` at once.

    The connection is watched: when nothing has been read for ``ping_interval`` seconds
    the listener sends ``PING``, and if no reply comes within ``ping_timeout`` it treats
    the connection as dead (a half-open TCP connection never errors by itself). After
    any loss it reconnects with exponential backoff (``backoff_base`` doubling up to
    ``backoff_cap``), resubscribes, and reports a gap for each subscription.

    ``relay.on_gap`` is called on the listener thread: keep it quick.

    Example::

        listener = Listener(relay, relay.subscribers)
        listener.start()
        ...
        listener.stop()

    :param relay: the relay to listen on.
    :param subscribers: what to run (``relay.subscribers``, or :class:`Subscriber`
        objects built by hand).
    :param queue_size: messages waiting per subscriber before new ones are dropped.
    :param ping_interval: seconds without any read before a ``PING``.
    :param ping_timeout: seconds to wait for the reply before reconnecting.
    :param backoff_base: first reconnect delay in seconds; doubled per failed attempt.
    :param backoff_cap: longest reconnect delay.
    :param poll_interval: how often the listener thread checks for ``stop()``.
    :param aio: the event loop thread for ``async def`` subscribers (a
        :class:`~redrelay.worker.aioloop.LoopThread`); by default the listener starts
        its own when it has any.
    """

    def __init__(
        self,
        relay: Relay,
        subscribers: Sequence[Subscriber],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        ping_interval: float = 5.0,
        ping_timeout: float = 3.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        poll_interval: float = 0.1,
        contexts: Sequence[HandlerContext] | None = None,
        on_gap: Callable[[GapReport], None] | None = None,
        aio: LoopThread | None = None,
    ) -> None:
        if queue_size < 1:
            raise ConfigurationError(f"queue_size= must be >= 1, got {queue_size!r}")
        for name, value in [
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("backoff_cap", backoff_cap),
            ("poll_interval", poll_interval),
        ]:
            if not value > 0:
                raise ConfigurationError(f"{name}= must be > 0 seconds, got {value!r}")
        self.relay = relay
        #: Called with each report, after ``relay.on_gap`` (exceptions are logged).
        self.on_gap = on_gap
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.poll_interval = poll_interval
        #: Set while subscribed (every SUBSCRIBE confirmed); cleared on a loss.
        self.connected = threading.Event()
        #: Gap reports made (sequence gaps, reconnects, drops).
        self.gaps = 0
        #: Messages known to be lost (sequence gaps and drops).
        self.missed = 0
        #: Messages dropped because a subscriber's queue was full.
        self.dropped = 0
        #: Times the subscription was re-established after a loss.
        self.reconnects = 0
        #: Messages that could not be decoded (logged, then skipped).
        self.decode_errors = 0
        #: Messages read from Redis (before dispatch).
        self.received = 0
        self._own_aio: LoopThread | None = None
        if aio is None and any(s.is_async for s in subscribers):
            from .worker.aioloop import LoopThread

            aio = self._own_aio = LoopThread("redrelay-subscribers-asyncio")
        self._workers = [
            _Worker(
                relay,
                s,
                queue_size,
                relay.handler_contexts if contexts is None else contexts,
                _bounded(aio, s),
            )
            for s in subscribers
        ]
        self._channels: dict[bytes, list[_Worker]] = {}
        self._patterns: dict[bytes, list[_Worker]] = {}
        for worker in self._workers:
            sub = worker.subscriber
            kind = "channel pattern" if sub.pattern else "channel"
            validate_name(kind, sub.channel, pattern=sub.pattern)
            key = channel_key(relay.namespace, sub.channel).encode()
            table = self._patterns if sub.pattern else self._channels
            table.setdefault(key, []).append(worker)
        self._prefix_len = len(relay.namespace) + 1
        self._names: dict[bytes, str] = {}
        self._last_seq: dict[tuple[bytes | None, bytes, str], int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._ever_connected = False
        self._unconfirmed = 0
        self._down_since: float | None = None
        #: Sessions opened so far (on a cluster, which node the next one subscribes on).
        self._sessions = 0
        self._down_reason = ""

    def __repr__(self) -> str:
        state = "connected" if self.connected.is_set() else "not connected"
        return f"<Listener {len(self._workers)} subscribers {state}>"

    @property
    def handler_errors(self) -> int:
        """Handler calls that raised (each was logged with its traceback)."""
        return sum(w.errors for w in self._workers)

    @property
    def handled(self) -> int:
        """Handler calls made, failed ones included."""
        return sum(w.handled for w in self._workers)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber threads and the listener thread; returns at once.

        Wait on :attr:`connected` to know when the subscriptions are in place.
        """
        if self._started or self._stopping.is_set():
            raise ConfigurationError(
                "this Listener was already started or stopped; create a new one"
            )
        self._started = True
        if not self._workers:
            return
        if self._own_aio is not None:
            self._own_aio.start()
        for worker in self._workers:
            worker.thread.start()
        self._thread = threading.Thread(
            target=self._run, name="redrelay-channel-listener", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Unsubscribe, close the connection, and join every thread.

        Messages already received are still handled if that ends within ``timeout``
        seconds; after that the rest are discarded. Returns False (and logs) if a
        handler was still running at the deadline. Idempotent.
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            worker.queue.put(_STOP)
        current = threading.current_thread()  # stop() may run in a handler
        for worker in self._workers:
            if worker.thread is not current:
                worker.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [
            w for w in self._workers if w.thread.is_alive() and w.thread is not current
        ]
        for worker in stuck:
            worker.abandon = True
        if self._own_aio is not None and not stuck:
            self._own_aio.stop(max(0.0, deadline - time.monotonic()))
        if stuck or thread.is_alive():
            log.warning(
                "listener stop: %d subscriber threads still busy after %.1f s (%s)",
                len(stuck),
                timeout,
                ", ".join(w.thread.name for w in stuck) or "listener thread",
            )
            return False
        return True

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- listener thread --------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        warned = 0.0
        while not self._stopping.is_set():
            try:
                self._session()
                break
            except (_Lost, RedrelayError) as exc:
                reason = str(exc)
            except Exception as exc:
                log.exception("listener: unexpected error; reconnecting")
                reason = f"unexpected {type(exc).__name__}: {exc}"
            if self._stopping.is_set():
                break
            self.connected.clear()
            now = time.monotonic()
            if self._down_since is None:
                attempt = 0
                self._down_since = warned = now
                self._down_reason = reason
                log.warning("listener cannot listen (%s); reconnecting", reason)
            elif now - warned >= STILL_DOWN_WARNING_INTERVAL:
                warned = now
                log.warning(
                    "listener still cannot listen after %.0f s (%s); retrying",
                    now - self._down_since,
                    reason,
                )
            else:
                log.debug("listener: reconnect attempt %d failed: %s", attempt, reason)
            # The first retry is quick (a blip); later ones back off, with jitter so
            # that many processes do not reconnect in step after a Redis restart.
            delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
            if attempt:
                delay *= random.uniform(0.5, 1.0)
            attempt += 1
            self._stopping.wait(delay)
        self.connected.clear()
        self._flush_drops(force=True)

    def _session(self) -> None:
        """Subscribe on a new connection; read until stopped (return) or lost."""
        conn = self.relay.new_connection(retries=0, socket_timeout=self.ping_timeout)
        raw: Any = None
        try:
            with translate(conn.url):
                # A bare connection, not a redis-py PubSub: PubSub reconnects and
                # resubscribes silently, and we must know when to report a gap. RESP2
                # because redis-py 8 defaults to RESP3, whose pushes it swallows. On a
                # cluster each session takes the next node (PUBLISH reaches them all).
                self._sessions += 1
                raw = conn.subscriber_connection(self._sessions)
                raw.connect()
                if self._channels:
                    raw.send_command("SUBSCRIBE", *self._channels, check_health=False)
                if self._patterns:
                    raw.send_command("PSUBSCRIBE", *self._patterns, check_health=False)
            self._read_loop(conn.url, raw)
        finally:
            if raw is not None:
                raw.disconnect()
            conn.close()

    def _read_loop(self, url: str, raw: Any) -> None:
        """Read replies; PING when idle; raise :class:`_Lost` if a PING is not answered.

        ``raw`` is a redis-py connection; every call on it is under ``translate``.
        """
        self._unconfirmed = len(self._channels) + len(self._patterns)
        last_read = time.monotonic()
        ping_sent: float | None = None
        unsubscribing = False
        while True:
            if self._stopping.is_set() and not unsubscribing:
                unsubscribing = True
                ping_sent = ping_sent or time.monotonic()  # bounds the wait for replies
                with translate(url):
                    if self._channels:
                        raw.send_command("UNSUBSCRIBE", check_health=False)
                    if self._patterns:
                        raw.send_command("PUNSUBSCRIBE", check_health=False)
            now = time.monotonic()
            if ping_sent is None:
                due = last_read + self.ping_interval
            else:
                due = ping_sent + self.ping_timeout
            wait = max(0.001, min(self.poll_interval, due - now))
            with translate(url):
                reply = raw.read_response() if raw.can_read(timeout=wait) else None
            now = time.monotonic()
            if reply is not None:
                last_read, ping_sent = now, None
                if self._dispatch(reply, unsubscribing):
                    return
                continue
            self._flush_drops()
            for worker in self._workers:  # liveness, as for consumer threads
                if worker.dead() and not self._stopping.is_set():
                    worker.revive()
            if now < due:
                continue
            if ping_sent is None:
                with translate(url):
                    raw.send_command("PING", check_health=False)
                ping_sent = now
            elif unsubscribing:
                return  # no confirmation; closing the connection unsubscribes anyway
            else:
                raise _Lost(f"no reply to PING within {self.ping_timeout:g} s")

    def _dispatch(self, reply: list[Any], unsubscribing: bool) -> bool:
        """Handle one reply; True when the last subscription is gone."""
        kind = reply[0]
        if kind == b"message":
            self._on_message(None, reply[1], reply[2])
        elif kind == b"pmessage":
            self._on_message(reply[1], reply[2], reply[3])
        elif kind in (b"subscribe", b"psubscribe"):
            self._unconfirmed -= 1
            if self._unconfirmed == 0:
                self._subscribed()
        elif kind in (b"unsubscribe", b"punsubscribe") and reply[2] == 0:
            if not unsubscribing:
                raise _Lost("the server ended the subscriptions")
            return True
        return False

    def _subscribed(self) -> None:
        if self._down_since is not None and not self._ever_connected:
            log.info(
                "listener connected after %.1f s", time.monotonic() - self._down_since
            )
            self._down_since = None
        elif self._down_since is not None:
            down = time.monotonic() - self._down_since
            reason = (
                f"reconnected after {down:.1f} s ({self._down_reason}): "
                "messages published meanwhile are lost"
            )
            self._down_since = None
            self.reconnects += 1
            log.info("listener reconnected after %.1f s", down)
            for key in self._channels:
                self._report(GapReport(channel=self._name(key), reason=reason))
            for key in self._patterns:
                pattern = self._name(key)
                self._report(GapReport(channel=pattern, pattern=pattern, reason=reason))
        self._ever_connected = True
        self.connected.set()

    def _name(self, key: bytes) -> str:
        name = self._names.get(key)
        if name is None:
            name = key[self._prefix_len :].decode("utf-8", "replace")
            if len(self._names) < _MAX_NAMES:  # pattern matches can name anything
                self._names[key] = name
        return name

    def _on_message(self, pattern: bytes | None, key: bytes, data: bytes) -> None:
        if pattern is not None and b"{" in key:
            # A queue's own channel (``<ns>:{<queue>}:done``, the results' waiters):
            # no channel name has a brace, so it is never a subscriber's message.
            return
        self.received += 1
        workers = self._patterns.get(pattern) if pattern else self._channels.get(key)
        if not workers:
            return  # an unsubscribe in flight
        name = self._name(key)
        message = self._decode(pattern, key, name, data)
        if message is None:
            return
        for worker in workers:
            if not worker.full():
                if worker.unreported_drops:
                    # The run of drops is over: reported (on_gap called) before the
                    # message that ends it reaches the handler.
                    self._flush_drops(worker, force=True)
                worker.queue.put(message)
                continue
            self.dropped += 1
            worker.unreported_drops += 1
            if worker.unreported_drops == 1:
                worker.drops_since = time.monotonic()
            else:
                self._flush_drops(worker)
