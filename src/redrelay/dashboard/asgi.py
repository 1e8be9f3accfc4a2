"""The dashboard as an ASGI application (no framework needed).

Example (uvicorn, or mounted under Starlette/FastAPI with ``Mount("/relay", app=...)``)::

    from redrelay.dashboard.asgi import app
    dashboard = app(relay, token=os.environ["DASHBOARD_TOKEN"])

The core is synchronous (it talks to Redis with the sync client): each request runs in
a worker thread, so the event loop never blocks; the live event stream is an async
generator on the loop, so an open dashboard tab holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from ..relay import Relay
from .core import Dashboard
from .http import Request, Response, parse_form
from .wsgi import MAX_FORM

__all__ = ["app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def app(relay: Relay, **options: Any) -> ASGIApp:
    """An ASGI app serving the dashboard; options are those of :class:`Dashboard`.

    The returned callable has a ``dashboard`` attribute (close it at shutdown).
    """
    board = Dashboard(relay, **options)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, board)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_FORM or not message.get("more_body"):
                break
        request = _request(scope, body[:MAX_FORM])
        response = await asyncio.to_thread(board.handle, request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.lower().encode(), v.encode("latin-1"))
                    for k, v in response.header_list()
                ],
            }
        )
        if isinstance(response.body, bytes):
            await send({"type": "http.response.body", "body": response.body})
            return
        await _stream(response, receive, send)

    asgi.dashboard = board  # type: ignore[attr-defined]
    return asgi


async def _lifespan(receive: Receive, send: Send, board: Dashboard) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(board.close)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _stream(response: Response, receive: Receive, send: Send) -> None:
    """Send an event stream until it ends or the client leaves (``http.disconnect``)."""
    body = response.body
    close = getattr(body, "close", None)
    if close is not None:
        close()  # the sync twin, never started: the async one is sent instead
    if response.abody is None:  # pragma: no cover - every stream of the core has one
        raise RuntimeError("a streamed response without an async body")
    frames = response.abody()

    async def pump() -> None:
        async for chunk in frames:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(disconnected())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await frames.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b""})


def _request(scope: Scope, body: bytes) -> Request:
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1")
        for k, v in scope.get("headers", [])
    }
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(headers.get("cookie", ""))
    query = {k: v[0] for k, v in parse_form(scope.get("query_string", b"")).items()}
    method = scope.get("method", "GET").upper()
    client = scope.get("client") or ("", 0)
    root = scope.get("root_path", "").rstrip("/")
    path = scope.get("path", "/")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    host = headers.get("host", "")
    return Request(
        method=method,
        path=path,
        root=root,
        query=query,
        form=parse_form(body) if method == "POST" else {},
        headers=headers,
        cookies={k: m.value for k, m in jar.items()},
        remote_addr=client[0] or "",
        origin=f"{scope.get('scheme', 'http')}://{host}",
        native=scope,
    )
