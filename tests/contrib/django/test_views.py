"""The SSE view under WSGI (test client) and ASGI (async client), and its access hook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import AsyncClient, Client

from redrelay import Relay
from redrelay.contrib.sse import hub_for

from ...processes import wait_for


def only_public(request: HttpRequest, channel: str) -> bool:
    """An SSE_AUTHORIZE hook for the tests."""
    return not channel.startswith("secret")


@pytest.fixture(autouse=True)
def quick_keepalive(settings: Any) -> None:
    settings.REDRELAY = {
        alias: {**config, "SSE_KEEPALIVE": 0.2}
        for alias, config in settings.REDRELAY.items()
    }


class Reader:
    """Reads a streaming response on this thread, as a WSGI server does.

    Each chunk comes within the keep-alive interval, so the waits are bounded; and the
    body is closed on the thread that iterates it, as a server does when a client left.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        seen = b""
        while needle not in seen:
            assert time.monotonic() < deadline, f"no {needle!r} in {seen!r}"
            seen += next(self.chunks)
        return seen


def test_wsgi_stream_of_a_channel(app_relay: Relay) -> None:
    response = Client().get("/events/news/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    reader = Reader(iter(response.streaming_content))
    assert b"retry: " in reader.until(b"\n\n")
    app_relay.publish("news", {"text": "hello"}, headers={"event": "note"})
    frames = reader.until(b'data: {"text":"hello"}')
    assert b"event: note\n" in frames
    assert b": keep-alive" in reader.until(b": keep-alive")
    hub = hub_for(app_relay)
    assert hub.clients == 1
    response.close()  # what the server does when the browser leaves
    wait_for(lambda: hub.clients == 0, timeout=5, what="the client to be forgotten")


def test_a_fixed_channel_view(app_relay: Relay) -> None:
    response = Client().get("/fixed/")
    reader = Reader(iter(response.streaming_content))
    reader.until(b"\n\n")
    app_relay.publish("news", 1)
    assert b"data: 1\n" in reader.until(b"data: 1")
    response.close()


def test_an_invalid_channel_is_404() -> None:
    assert Client().get("/events/a*b/").status_code == 404


def test_sse_authorize_setting(settings: Any) -> None:
    settings.REDRELAY = {
        alias: {
            **config,
            "SSE_AUTHORIZE": "tests.contrib.django.test_views.only_public",
        }
        for alias, config in settings.REDRELAY.items()
    }
    assert Client().get("/events/secret-plans/").status_code == 403
    response = Client().get("/events/public/")
    assert response.status_code == 200
    response.close()


def test_authorize_in_a_subclass() -> None:
    assert Client().get("/staff/news/").status_code == 403
    response = Client().get("/staff/news/", headers={"X-Staff": "yes"})
    assert response.status_code == 200
    response.close()


def test_asgi_stream_is_async(app_relay: Relay) -> None:
    async def go() -> bytes:
        response = await AsyncClient().get("/events/news/")
        assert response.status_code == 200
        chunks = response.streaming_content.__aiter__()
        seen = await asyncio.wait_for(chunks.__anext__(), 5)
        assert b"retry: " in seen
        await asyncio.to_thread(app_relay.publish, "news", {"via": "asgi"})
        while b'"via":"asgi"' not in seen:
            seen += await asyncio.wait_for(chunks.__anext__(), 5)
        await chunks.aclose()
        return seen

    assert b'data: {"via":"asgi"}' in asyncio.run(go())
    wait_for(lambda: hub_for(app_relay).clients == 0, timeout=5)
