"""Server-sent events from redrelay channels, for any web framework.

A browser's ``EventSource`` keeps one HTTP response open and reads events from it. This
module turns a channel into such a response body, and shares **one** Redis subscription
among every client of a process: the :class:`EventHub` of a relay runs one
:class:`~redrelay.channel.Listener` subscribed to the pattern ``<namespace>:*`` and hands
each message to the clients that watch its channel. A thousand open tabs cost a thousand
small in-memory buffers, not a thousand Redis connections or threads.

Example (any WSGI framework; Flask and Django wrap this in a blueprint and a view)::

    from redrelay.contrib.sse import hub_for

    def events(request, channel):
        if not user_may_watch(request.user, channel):   # authorization is the app's job
            return HttpResponseForbidden()
        body = hub_for(relay).stream(channel)            # raises InvalidName first
        return StreamingResponse(body, content_type="text/event-stream")

    # ASGI: ``hub_for(relay).astream(channel)`` is the same as an async iterator.

**Frames.** A stream starts with a comment and ``retry: <ms>`` once the subscription is
in place, so every message published after the browser's ``onopen`` reaches it. Each
message becomes::

    id: <message id>
    event: <the message's "event" header, if any>
    data: <the body as JSON; a raw body as text, one data: line per line>

Idle streams get a ``: keep-alive`` comment every ``keepalive`` seconds. Losses are told,
never hidden (pub/sub is at-most-once): an ``event: gap`` frame whose data is
``{"channel", "missed", "reason"}`` is sent when the hub's listener saw a sequence gap or
reconnected, when this client was too slow and its buffer dropped the oldest messages,
and when a browser reconnects with ``Last-Event-ID`` (there is no replay).

**Disconnects.** A WSGI server notices that a client left when a write fails, so within
a keep-alive interval or two; it then closes the body iterator, and the ``GeneratorExit``
unregisters the client. ASGI servers cancel or close the async iterator, with the same
effect. Nothing per client is left behind: no thread, no connection.

**Lifetime.** The hub starts its listener (one thread for reading, one for fan-out, one
connection) with its first client and **keeps it** when the last client leaves, so the
next client starts at once. :meth:`EventHub.close` stops it and ends every open stream;
call it before ``relay.close()`` (tests do). A forked process starts a listener of its
own on first use.

Publishers choose the event type with a header::

    relay.publish("jobs", {"done": 3}, headers={"event": "progress"})
    # in the browser: source.addEventListener("progress", ...)
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from ..channel import GapReport
from ..errors import ConfigurationError
from ..handlers import Subscriber
from ..listener import Listener
from ..message import Message
from ..protocol.keys import validate_name
from .sse_frames import EVENT_HEADER as EVENT_HEADER
from .sse_frames import KEEPALIVE_FRAME, _gap_frame, _render

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_RETRY_MS",
    "EVENT_HEADER",
    "EventHub",
    "hub_for",
    "stream_topic",
]

#: Seconds without a frame after which a stream sends a ``: keep-alive`` comment.
DEFAULT_KEEPALIVE = 15.0
#: The reconnection delay told to browsers (``retry:``), in milliseconds.
DEFAULT_RETRY_MS = 3000
#: Messages buffered per client; a client that falls further behind loses the oldest.
DEFAULT_BUFFER = 100
#: Seconds a new stream waits for the hub's subscription before it starts anyway.
SUBSCRIBE_TIMEOUT = 5.0

#: The channel of the hub's one pattern subscription (everything in the namespace).
_ALL = "*"


def hub_for(relay: Relay) -> EventHub:
    """The :class:`EventHub` of ``relay``, created on first use (no I/O until a stream starts)."""
    with _hubs_lock:
        hub = _hubs.get(relay)
        if hub is None:
            hub = _hubs[relay] = EventHub(relay)
        return hub


_hubs: weakref.WeakKeyDictionary[Relay, EventHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


class EventHub:
    """Fans one relay's channel messages out to server-sent-event streams.

    Get it with :func:`hub_for` rather than building one, so that a process has one
    subscription per relay. Thread-safe; the async streams share it with the sync ones.

    :param relay: the relay whose channels are streamed.
    """

    def __init__(self, relay: Relay) -> None:
        self._relay_ref = weakref.ref(relay)
        self._lock = threading.Lock()
        self._clients: dict[str, set[_Client]] = {}
        self._listener: Listener | None = None
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.clients} clients"
        return f"<EventHub {state}>"

    @property
    def clients(self) -> int:
        """Streams connected now."""
        with self._lock:
            return sum(len(c) for c in self._clients.values())

    @property
    def listening(self) -> bool:
        """True while the hub's subscription is in place."""
        listener = self._listener
        return listener is not None and listener.connected.is_set()

    # -- streams --------------------------------------------------------------------------

    def stream(
        self,
        channel: str,
        *,
        keepalive: float = DEFAULT_KEEPALIVE,
        retry_ms: int | None = DEFAULT_RETRY_MS,
        buffer: int = DEFAULT_BUFFER,
        last_event_id: str | None = None,
    ) -> Generator[bytes, None, None]:
        """The body of a ``text/event-stream`` response for ``channel``: UTF-8 frames.

        Any WSGI server or framework takes it as a response body as it is. For WSGI: the client is registered when the server first iterates, and
        unregistered when the server closes the iterator (the client left) or the hub
        is closed (the stream ends).

        :param channel: the channel to watch; validated now.
        :param keepalive: seconds without a frame before a ``: keep-alive`` comment.
            It also bounds how long a departed client goes unnoticed.
        :param retry_ms: the browser's reconnection delay; None sends none.
        :param buffer: messages kept for a slow client before the oldest are dropped
            (and reported with an ``event: gap`` frame).
        :param last_event_id: the request's ``Last-Event-ID`` header: the browser is
            reconnecting, and is told with a gap frame that what it missed is gone.
        :raises InvalidName: ``channel`` is not a valid channel name.
        """
        opening = self._opening(channel, keepalive, retry_ms, buffer, last_event_id)
        return self._sync_stream(_SyncClient(channel, buffer), keepalive, opening)

    def astream(
        self,
        channel: str,
        *,
        keepalive: float = DEFAULT_KEEPALIVE,
        retry_ms: int | None = DEFAULT_RETRY_MS,
        buffer: int = DEFAULT_BUFFER,
        last_event_id: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """:meth:`stream` for ASGI: an async iterator of the same frames.

        Iterate it on the event loop that serves the request (``async for``, or hand it
        to a streaming response); the hub's thread feeds it with
        ``loop.call_soon_threadsafe``. Cancelling or closing it unregisters the client.

        :raises InvalidName: ``channel`` is not a valid channel name (at the call).
        """
        opening = self._opening(channel, keepalive, retry_ms, buffer, last_event_id)
        return self._async_stream(channel, buffer, keepalive, opening)

    def _opening(
        self,
        channel: str,
        keepalive: float,
        retry_ms: int | None,
        buffer: int,
        last_event_id: str | None,
    ) -> bytes:
        validate_name("channel", channel)
        if not keepalive > 0:
            raise ConfigurationError(
                f"keepalive= must be > 0 seconds, got {keepalive!r}"
            )
        if not isinstance(buffer, int) or buffer < 1:
            raise ConfigurationError(f"buffer= must be an int >= 1, got {buffer!r}")
        if retry_ms is not None and (not isinstance(retry_ms, int) or retry_ms < 0):
            raise ConfigurationError(
                f"retry_ms= must be an int >= 0 or None, got {retry_ms!r}"
            )
        text = f": redrelay channel {channel}\n"
        if retry_ms is not None:
            text += f"retry: {retry_ms}\n"
        text += "\n"
        if last_event_id:
            text += _gap_frame(
                channel,
                None,
                "reconnected: messages published while this client was away are lost "
                "(pub/sub has no replay)",
            )
        return text.encode()

    def _sync_stream(
        self, client: _SyncClient, keepalive: float, opening: bytes
    ) -> Generator[bytes, None, None]:
        try:
            listener = self._add(client)
            listener.connected.wait(SUBSCRIBE_TIMEOUT)
            yield opening
            next_beat = time.monotonic() + keepalive
            while True:
                items, dropped, closed = client.take(next_beat - time.monotonic())
                frames = _render(client.channel, items, dropped, client.size)
                if frames:
                    yield frames
                    next_beat = time.monotonic() + keepalive
                if closed:
                    return
                if time.monotonic() >= next_beat:
                    yield KEEPALIVE_FRAME
                    next_beat = time.monotonic() + keepalive
        finally:
            self._remove(client)

    async def _async_stream(
        self, channel: str, buffer: int, keepalive: float, opening: bytes
    ) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        client = _AsyncClient(channel, buffer, loop, self)
        try:
            listener = self._add(client)
            deadline = loop.time() + SUBSCRIBE_TIMEOUT
            while not listener.connected.is_set() and loop.time() < deadline:
                await asyncio.sleep(0.01)
            yield opening
            while True:
                try:
                    first = await asyncio.wait_for(client.queue.get(), keepalive)
                except asyncio.TimeoutError:
                    yield KEEPALIVE_FRAME
                    continue
                items = [first]
                while not client.queue.empty():
                    items.append(client.queue.get_nowait())
                closed = _CLOSED in items
                dropped, client.dropped = client.dropped, 0
                frames = _render(channel, items, dropped, buffer)
                if frames:
                    yield frames
                if closed:
                    return
        finally:
            self._remove(client)

    # -- registry of clients --------------------------------------------------------------

    def _add(self, client: _Client) -> Listener:
        """Register ``client``; start the listener if there is none (in this process)."""
        with self._lock:
            if self._closed:
                raise ConfigurationError(
                    "this EventHub is closed; get a new one with hub_for(relay)"
                )
            if self._pid != os.getpid():
                # A forked child: the parent's threads do not exist here, and its
                # clients are the parent's. Leave the inherited socket alone.
                self._pid, self._listener, self._clients = os.getpid(), None, {}
            if self._listener is None:
                relay = self._relay_ref()
                if relay is None:
                    raise ConfigurationError("the relay of this EventHub is gone")
                # The fan-out is redrelay's own code, not an app handler: no app
                # context or connection cleanup per message (contexts=()).
                subscriber = Subscriber(
                    channel=_ALL, pattern=True, handler=self._dispatch
                )
                self._listener = Listener(
                    relay, [subscriber], contexts=(), on_gap=self._on_gap
                )
                self._listener.start()
            self._clients.setdefault(client.channel, set()).add(client)
            return self._listener

    def _remove(self, client: _Client) -> None:
        with self._lock:
            clients = self._clients.get(client.channel)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._clients[client.channel]

    def _watchers(self, channel: str) -> tuple[_Client, ...]:
        with self._lock:
            if channel == _ALL:
                return tuple(c for cs in self._clients.values() for c in cs)
            return tuple(self._clients.get(channel, ()))

    def _dispatch(self, message: Message) -> None:
        """The fan-out: runs on the listener's subscriber thread for every message."""
        if message.channel is not None:
            for client in self._watchers(message.channel):
                client.push(message)

    def _on_gap(self, report: GapReport) -> None:
        # Reports of the pattern subscription itself (reconnects, the fan-out thread
        # falling behind) concern every client; sequence gaps name their channel.
        for client in self._watchers(report.channel):
            client.push(report)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """End every open stream, stop the listener and forget this hub. Idempotent.

        Streams end normally (browsers reconnect after their ``retry:`` delay and get
        a new hub); :func:`hub_for` creates a new hub from now on.
        """
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
            clients = [c for cs in self._clients.values() for c in cs]
        for client in clients:
            client.close()
        if listener is not None and self._pid == os.getpid():
            listener.stop(timeout)
        relay = self._relay_ref()
        if relay is not None:
            with _hubs_lock:
                if _hubs.get(relay) is self:
                    del _hubs[relay]


# -- clients ------------------------------------------------------------------------------

_CLOSED = object()


class _Client:
    """One open stream: a channel and a bounded buffer fed by the hub's thread."""

    channel: str

    def push(self, item: Message | GapReport) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _SyncClient(_Client):
    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.size = size
        self.items: deque[Message | GapReport] = deque()
        self.dropped = 0
        self.closed = False
        self.cond = threading.Condition(threading.Lock())

    def push(self, item: Message | GapReport) -> None:
        with self.cond:
            if len(self.items) >= self.size:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def take(self, timeout: float) -> tuple[list[Message | GapReport], int, bool]:
        """Everything buffered (waiting up to ``timeout`` for something), drops, closed."""
        with self.cond:
            if not self.items and not self.closed and timeout > 0:
                self.cond.wait(timeout)
            items = list(self.items)
            self.items.clear()
            dropped, self.dropped = self.dropped, 0
            return items, dropped, self.closed


class _AsyncClient(_Client):
    def __init__(
        self, channel: str, size: int, loop: asyncio.AbstractEventLoop, hub: EventHub
    ) -> None:
        self.channel = channel
        self.loop = loop
        self.hub = hub
        self.queue: asyncio.Queue[object] = asyncio.Queue(size)
        self.dropped = 0

    def push(self, item: Message | GapReport) -> None:
        self._call(self._put, item)

    def close(self) -> None:
        self._call(self._put, _CLOSED)

    def _call(self, callback: Any, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, item)
        except RuntimeError:
            # The loop is closed, so the stream can never run its cleanup.
            self.hub._remove(self)

    def _put(self, item: object) -> None:
        """Runs on the stream's event loop: a full buffer drops its oldest item."""
        if self.queue.full():
            if self.queue.get_nowait() is not _CLOSED:
                self.dropped += 1
            else:  # never drop the end of the stream
                item = _CLOSED
        self.queue.put_nowait(item)


# Topics are streamed from the stream itself, resumable: see redrelay.contrib.topic_sse.
from .topic_sse import stream_topic as stream_topic  # noqa: E402
