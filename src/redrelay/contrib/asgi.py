"""Server-sent events for ASGI apps (Starlette, FastAPI, Django's ASGI handler, bare ASGI).

Two pieces, both framework-neutral (no Starlette import):

- :func:`channel_events`: the async iterator of SSE frames of one channel, to hand to
  a streaming response (``StreamingResponse(channel_events(relay, "jobs"), ...)``).
  It is :meth:`EventHub.astream <redrelay.contrib.sse.EventHub.astream>`: one shared
  Redis subscription per process, gaps told as ``event: gap`` frames.
- :class:`EventStream`: a plain ASGI app that sends any such iterator as a
  ``text/event-stream`` response and stops it as soon as the client leaves
  (``http.disconnect``), so an idle stream is not left until its next keep-alive.
  :func:`channel_stream` builds one that streams the channel named in the path.

Example (Starlette)::

    from starlette.routing import Route
    from redrelay.contrib.asgi import channel_stream

    routes = [
        Route("/events/{channel}", channel_stream(relay, authorize=may_watch)),
    ]

Authorization is the app's: ``authorize(scope, channel)`` returns (or awaits to) True
to allow the stream; otherwise the answer is 403. An invalid channel name is a 404.
A durable topic streams the same way, resumable with ``Last-Event-ID``:
:func:`topic_events` and :func:`topic_stream` (``Route("/topics/{topic}",
topic_stream(relay))``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidName
from ..io.aio import AsyncConnection
from ..protocol.requests import Step
from .sse import DEFAULT_BUFFER, DEFAULT_KEEPALIVE, DEFAULT_RETRY_MS, hub_for
from .topic_sse import topic_script

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = [
    "SSE_HEADERS",
    "EventStream",
    "channel_events",
    "channel_stream",
    "topic_events",
    "topic_stream",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: ``authorize(scope, channel)``: may this request watch this channel?
Authorize = Callable[[Scope, str], "bool | Awaitable[bool]"]

#: Response headers of an event stream: no caching, no proxy buffering (nginx).
SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def channel_events(
    relay: Relay,
    channel: str,
    *,
    last_event_id: str | None = None,
    keepalive: float = DEFAULT_KEEPALIVE,
    retry_ms: int | None = DEFAULT_RETRY_MS,
    buffer: int = DEFAULT_BUFFER,
) -> AsyncIterator[bytes]:
    """The SSE frames of ``channel`` as an async iterator (see :mod:`redrelay.contrib.sse`).

    :param last_event_id: the request's ``Last-Event-ID`` header, if any.
    :raises InvalidName: ``channel`` is not a valid channel name (at the call).
    """
    return hub_for(relay).astream(
        channel,
        keepalive=keepalive,
        retry_ms=retry_ms,
        buffer=buffer,
        last_event_id=last_event_id,
    )


async def topic_events(
    relay: Relay,
    topic: str,
    *,
    last_event_id: str | None = None,
    start: str = "now",
    keepalive: float = DEFAULT_KEEPALIVE,
    retry_ms: int | None = DEFAULT_RETRY_MS,
) -> AsyncIterator[bytes]:
    """The SSE frames of a durable topic, resumable after ``last_event_id``.

    The same code as the WSGI :func:`~redrelay.contrib.topic_sse.stream_topic` (its
    arguments and frames), driven on ``redis.asyncio``: each open stream holds one
    connection of its own, blocked in ``XREAD`` (not one of the relay's pool, which
    producers need).

    :raises InvalidName: ``topic`` is not a valid name (at the first frame).
    """
    script = topic_script(relay, topic, last_event_id, start, keepalive, retry_ms)
    conn = AsyncConnection(
        relay.connection.url,
        retries=0,
        socket_timeout=keepalive + 10,
        namespace=relay.namespace,
    )
    try:
        reply: Any = None
        while True:
            item = script.send(reply)
            if isinstance(item, Step):
                reply = await conn.send((item,))
            else:
                reply = None
                yield item
    finally:
        script.close()
        await conn.close()


def topic_stream(
    relay: Relay,
    *,
    authorize: Authorize | None = None,
    param: str = "topic",
    start: str = "now",
    keepalive: float = DEFAULT_KEEPALIVE,
    retry_ms: int | None = DEFAULT_RETRY_MS,
) -> EventStream:
    """An :class:`EventStream` of the durable topic named by the path parameter
    ``param``, resuming after the browser's ``Last-Event-ID``.

    :param authorize: ``authorize(scope, topic)``, sync or async; False answers 403.
    """

    async def frames(scope: Scope) -> AsyncIterator[bytes] | None:
        name = _path_param(scope, param)
        if not await _allowed(authorize, scope, name):
            return None
        relay.topic(name)  # an invalid name answers 404 now, not mid-stream
        return topic_events(
            relay,
            name,
            last_event_id=_last_event_id(scope),
            start=start,
            keepalive=keepalive,
            retry_ms=retry_ms,
        )

    return EventStream(frames)


class EventStream:
    """An ASGI app that streams ``frames(scope)`` as ``text/event-stream``.

    ``frames`` returns the async iterator of a request (None: 403 Forbidden; raising
    :class:`InvalidName`: 404). The iterator is closed when the client disconnects,
    when it ends, or when the server shuts down.
    """

    def __init__(
        self, frames: Callable[[Scope], Awaitable[AsyncIterator[bytes] | None]]
    ):
        self.frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"EventStream serves HTTP only, not {scope['type']!r}")
        try:
            frames = await self.frames(scope)
        except InvalidName as exc:
            await _plain(send, 404, str(exc))
            return
        if frames is None:
            await _plain(send, 403, "not allowed to watch this stream")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in SSE_HEADERS.items()],
            }
        )
        pump = asyncio.ensure_future(_pump(frames, send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            await asyncio.gather(gone, _stop(pump), return_exceptions=True)
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()  # unregisters the client now, not at garbage collection
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def channel_stream(
    relay: Relay,
    *,
    authorize: Authorize | None = None,
    param: str = "channel",
    keepalive: float = DEFAULT_KEEPALIVE,
    retry_ms: int | None = DEFAULT_RETRY_MS,
    buffer: int = DEFAULT_BUFFER,
) -> EventStream:
    """An :class:`EventStream` of the channel named by the path parameter ``param``
    (the router's ``scope["path_params"]``, else the last path segment).

    :param authorize: ``authorize(scope, channel)``, sync or async; False answers 403.
    """

    async def frames(scope: Scope) -> AsyncIterator[bytes] | None:
        channel = _path_param(scope, param)
        if not await _allowed(authorize, scope, channel):
            return None
        return channel_events(
            relay,
            channel,
            last_event_id=_last_event_id(scope),
            keepalive=keepalive,
            retry_ms=retry_ms,
            buffer=buffer,
        )

    return EventStream(frames)


def _path_param(scope: Scope, param: str) -> str:
    """The router's ``scope["path_params"][param]``, else the last path segment."""
    params = scope.get("path_params") or {}
    name: str = params.get(param) or scope["path"].rstrip("/").rsplit("/", 1)[-1]
    return name


async def _allowed(authorize: Authorize | None, scope: Scope, name: str) -> bool:
    if authorize is None:
        return True
    allowed = authorize(scope, name)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    return bool(allowed)


def _last_event_id(scope: Scope) -> str | None:
    last = dict(scope.get("headers") or []).get(b"last-event-id")
    return last.decode("latin-1") if last else None


async def _pump(frames: AsyncIterator[bytes], send: Send) -> None:
    async for frame in frames:
        await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _stop(task: asyncio.Future[None]) -> None:
    """Cancel ``task`` until it has ended.

    Once is not always enough: redis.asyncio (seen with 8.2 on Python 3.11) can lose a
    cancellation that arrives while a reply is being read, returning the reply with the
    cancel still pending; the topic stream then sent its next ``XREAD BLOCK`` and held
    the request, its connection and a server's shutdown until the keep-alive.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    await asyncio.gather(task, return_exceptions=True)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
