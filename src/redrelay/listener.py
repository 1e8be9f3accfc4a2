"""The listener: one thread and one connection run every channel subscriber of a process.

Pub/sub is at-most-once, so loss is made visible instead of silent:

- every publisher stamps a sequence number per channel (:mod:`redrelay.channel`), and
  the :class:`Listener` reports a :class:`GapReport` when a number is skipped;
- after a reconnect the listener reports a gap for each subscription, because whatever
  was published while it was away is gone (the next sequence gap tells how much);
- a subscriber whose queue is full drops messages and reports that too.

A report is logged (one WARNING line on the ``redrelay.channel`` logger), counted
(``Listener.gaps``) and passed to ``Relay(on_gap=...)``. Users who cannot lose events
use a topic.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, DecodeError, RedrelayError
from .failures import Failure, report_failure
from .handlers import HandlerContext, Subscriber, acall_handler, call_handler
from .io.sync import translate
from .message import Message
from .protocol.envelope import decode_entry, new_id
from .protocol.keys import channel_key, validate_name

if TYPE_CHECKING:
    from .relay import Relay
    from .worker.aioloop import Bounded, LoopThread

__all__ = ["GapReport", "Listener"]

log = logging.getLogger("redrelay.channel")

#: Messages waiting for one subscriber before new ones are dropped (and reported).
DEFAULT_QUEUE_SIZE = 1000
#: (channel, publisher) pairs whose last sequence number a listener remembers.
MAX_TRACKED_PUBLISHERS = 10_000
#: A run of dropped messages is reported at least this often (seconds).
DROP_REPORT_INTERVAL = 1.0
#: While Redis stays unreachable, the listener logs a WARNING this often (seconds).
STILL_DOWN_WARNING_INTERVAL = 60.0

_STOP = object()
_MAX_NAMES = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class GapReport:
    """Messages on a channel were lost (or may have been), and why.

    The seq fields are ``None`` when the count cannot be known (after a reconnect).
    """

    #: The channel (for a reconnect on a pattern subscription, the pattern).
    channel: str
    #: The publisher whose sequence skipped, ``<relay id>.<thread>``; None if unknown.
    publisher: str | None = None
    #: The sequence number that should have come next.
    expected: int | None = None
    #: The sequence number that came instead.
    received: int | None = None
    #: How many messages were lost, when known.
    missed: int | None = None
    #: "sequence gap", "subscriber too slow (...)", "reconnected after N s (...): ...".
    reason: str
    #: The pattern of the subscription that saw it, for pattern subscriptions.
    pattern: str | None = None

    def __str__(self) -> str:
        text = f"channel {self.channel!r}: {self.reason}"
        if self.publisher is not None:
            text += f" (publisher {self.publisher}"
            if self.expected is not None:
                text += f", expected seq {self.expected}, received {self.received}"
            text += ")"
        if self.missed is not None:
            text += f"; {self.missed} messages lost"
        return text


# -- subscribing --------------------------------------------------------------------


class _Worker:
    """One subscriber's thread and its bounded queue of messages."""

    def __init__(
        self,
        relay: Relay,
        subscriber: Subscriber,
        queue_size: int,
        contexts: Sequence[HandlerContext] = (),
        bounded: Bounded | None = None,
    ) -> None:
        self.relay = relay
        self.subscriber = subscriber
        #: For an async handler: its coroutines' bound on the event loop thread.
        self.bounded = bounded
        self.contexts = contexts
        self.queue_size = queue_size
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.errors = 0
        self.handled = 0
        #: Messages dropped and not reported yet, and when the first of them was.
        self.unreported_drops = 0
        self.drops_since = 0.0
        self.abandon = False
        kind = "pattern" if subscriber.pattern else "channel"
        self.thread = threading.Thread(
            target=self._run,
            name=f"redrelay-subscriber-{kind}-{subscriber.channel}",
            daemon=True,
        )

    def offer(self, message: Message) -> bool:
        """Queue ``message`` unless the queue is full. Only the listener thread calls
        this, so the size can only shrink between the check and the put."""
        if self.queue.qsize() >= self.queue_size:
            return False
        self.queue.put(message)
        return True

    def _run(self) -> None:
        bounded = self.bounded
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    return
                if self.abandon:
                    continue
                if bounded is None:
                    self._handle(item)
                    continue
                bounded.acquire()  # at most `concurrency` coroutines at once
                coro = acall_handler(self.subscriber.handler, item, self.contexts)
                bounded.submit(coro, functools.partial(self._done, item))
        finally:
            if bounded is not None:
                bounded.wait_all()  # Listener.stop() bounds this with its timeout

    def _done(self, message: Message, future: concurrent.futures.Future[Any]) -> None:
        """An async handler ended (on the loop thread)."""
        if future.cancelled():
            return
        error = future.exception() or future.result()
        self._ended(message, error if isinstance(error, BaseException) else None)

    def _handle(self, message: Message) -> None:
        self._ended(
            message, call_handler(self.subscriber.handler, message, self.contexts)
        )

    def _ended(self, message: Message, error: BaseException | None) -> None:
        """Count a handler call; report its failure (any BaseException, as for queues:
        :mod:`redrelay.failures`). The subscriber thread goes on either way."""
        self.handled += 1
        if error is None:
            return
        self.errors += 1
        sub = self.subscriber
        failure = Failure(
            kind="channel", name=message.channel or sub.channel, message=message,
            error=error, attempt=1,
        )  # fmt: skip
        report_failure(self.relay, failure)


def _bounded(aio: LoopThread | None, subscriber: Subscriber) -> Bounded | None:
    if aio is None or not subscriber.is_async:
        return None
    from .worker.aioloop import Bounded

    return Bounded(aio, subscriber.concurrency)


class _Lost(Exception):
    """The subscription connection is gone or unresponsive."""


class Listener:
    """Runs channel subscribers: one thread and one connection for all of them.

    The listener thread only reads and sorts: each subscriber has its own thread and a
    bounded queue, so a slow handler never delays the others or the reading. When a
    queue is full, new messages for that subscriber are dropped and reported as a gap
    ("subscriber too slow"). A handler's exception is logged with its traceback.
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
        self.received += 1
        workers = self._patterns.get(pattern) if pattern else self._channels.get(key)
        if not workers:
            return  # an unsubscribe in flight
        name = self._name(key)
        message = self._decode(pattern, key, name, data)
        if message is None:
            return
        for worker in workers:
            if worker.offer(message):
                if worker.unreported_drops:
                    self._flush_drops(worker, force=True)  # the run of drops is over
                continue
            self.dropped += 1
            worker.unreported_drops += 1
            if worker.unreported_drops == 1:
                worker.drops_since = time.monotonic()
            else:
                self._flush_drops(worker)

    def _decode(
        self, pattern: bytes | None, key: bytes, name: str, data: bytes
    ) -> Message | None:
        try:
            decoded = decode_entry(data, self.relay.signing_key)
            env = decoded.envelope
            if env is None:
                return Message(
                    id=decoded.raw_id or new_id(),
                    body=decoded.raw,
                    channel=name,
                    raw=True,
                )
            message = Message(
                id=env["i"],
                body=env["b"],
                headers=env.get("h") or {},
                channel=name,
                enqueued_at=float(env.get("t", 0)) / 1000,
            )
        except (DecodeError, TypeError, ValueError) as exc:
            self.decode_errors += 1
            log.error(
                "channel %r: skipping a message that does not decode "
                "(%d bytes, %r...): %s",
                name,
                len(data),
                data[:40],
                getattr(exc, "reason", exc),
            )
            return None
        publisher, seq = env.get("p"), env.get("s")
        if isinstance(publisher, str) and type(seq) is int:
            self._check_seq(pattern, key, name, publisher, seq)
        return message

    def _check_seq(
        self, pattern: bytes | None, key: bytes, name: str, publisher: str, seq: int
    ) -> None:
        track = (pattern, key, publisher)
        last = self._last_seq.pop(track, None)
        self._last_seq[track] = seq  # re-inserted: the dict stays in LRU order
        if last is None:
            if len(self._last_seq) > MAX_TRACKED_PUBLISHERS:
                del self._last_seq[next(iter(self._last_seq))]
        elif seq > last + 1:
            self._report(
                GapReport(
                    channel=name,
                    publisher=publisher,
                    expected=last + 1,
                    received=seq,
                    missed=seq - last - 1,
                    reason="sequence gap",
                    pattern=self._name(pattern) if pattern else None,
                )
            )

    def _flush_drops(
        self, worker: _Worker | None = None, *, force: bool = False
    ) -> None:
        """Report dropped messages: when the queue takes messages again, every
        ``DROP_REPORT_INTERVAL`` seconds during a long run, and at stop."""
        now = time.monotonic()
        for w in [worker] if worker else self._workers:
            if not w.unreported_drops:
                continue
            if not force and now - w.drops_since < DROP_REPORT_INTERVAL:
                continue
            sub = w.subscriber
            count, w.unreported_drops = w.unreported_drops, 0
            self._report(
                GapReport(
                    channel=sub.channel,
                    missed=count,
                    reason=f"subscriber too slow (its queue of {w.queue_size} was full)",
                    pattern=sub.channel if sub.pattern else None,
                )
            )

    def _report(self, report: GapReport) -> None:
        self.gaps += 1
        if report.missed is not None:
            self.missed += report.missed
        log.warning("%s", report)
        for on_gap in (self.relay.on_gap, self.on_gap):
            if on_gap is not None:
                try:
                    on_gap(report)
                except Exception:
                    log.exception("on_gap raised on %s", report)
