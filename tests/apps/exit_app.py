"""Handlers that call ``sys.exit(3)`` (or raise ``TEST_RAISE``) on ``{"exit": true}``.

Issue 18's example on every kind of handler: a sync and an async queue consumer, a sync
and an async topic group, a sync and an async channel subscriber. Each ordinary message
increments ``<ns>:test:count:<kind>``. Environment: REDRELAY_URL, TEST_NAMESPACE,
TEST_RAISE (``SystemExit`` (default), ``KeyboardInterrupt`` or ``GeneratorExit``).
"""

from __future__ import annotations

import asyncio
import os
import sys

import redis

from redrelay import Message, Relay

NAMESPACE = os.environ.get("TEST_NAMESPACE", "test-app")
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=2.0,
    heartbeat=0.4,
    retries=1,
    backoff=0.1,
    prefetch=10,
)
KINDS = ["se", "ase", "topic", "atopic", "chan", "achan"]
_client = redis.Redis.from_url(os.environ.get("REDRELAY_URL") or "redis://localhost")


def _exit() -> None:
    kind = os.environ.get("TEST_RAISE", "SystemExit")
    if kind == "SystemExit":
        sys.exit(3)
    raise {"KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit}[
        kind
    ]()


def _handle(kind: str, message: Message) -> None:
    if message.body.get("probe"):
        return  # the test publishes probes until the channel subscribers listen
    if message.body.get("exit"):
        _exit()
    _client.incr(f"{NAMESPACE}:test:count:{kind}")


def _sync(kind: str) -> object:
    def handler(message: Message) -> None:
        _handle(kind, message)

    handler.__qualname__ = f"handler_{kind}"
    return handler


def _async(kind: str) -> object:
    async def handler(message: Message) -> None:
        await asyncio.sleep(0)
        _handle(kind, message)

    handler.__qualname__ = f"ahandler_{kind}"
    return handler


relay.consumer("se")(_sync("se"))
relay.consumer("ase", concurrency=4)(_async("ase"))
relay.subscriber("events", group="topic", start="beginning", retries=1, backoff=0.1)(
    _sync("topic")
)
relay.subscriber("aevents", group="atopic", start="beginning", retries=1, backoff=0.1)(
    _async("atopic")
)
relay.subscriber("chan")(_sync("chan"))
relay.subscriber("achan")(_async("achan"))
