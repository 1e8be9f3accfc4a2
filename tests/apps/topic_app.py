"""A relay with topic subscribers for worker subprocesses in tests.

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_LEASE (seconds), TEST_MAX_DELIVERIES,
TEST_PREFETCH, TEST_CONCURRENCY, TEST_GROUPS (comma-separated; default both), TEST_ASYNC
(1: the handlers are ``async def``, run as coroutines on the worker's event loop),
TEST_HOLD_AHEAD (1: see :func:`hold_if_ahead`).
Two groups of the topic ``events`` record each body's ``n`` in ``<ns>:test:topic:<group>``
(a list) once done; a body with ``"die": true`` SIGKILLs its billing worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import redis

from redrelay import Message, Relay
from tests.apps.clients import client_of

NAMESPACE = os.environ.get("TEST_NAMESPACE", "test-app")
LEASE = float(os.environ.get("TEST_LEASE", "2"))
PREFETCH = int(os.environ.get("TEST_PREFETCH", "10"))
HOLD_AHEAD = os.environ.get("TEST_HOLD_AHEAD") == "1"
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=LEASE,
    heartbeat=LEASE / 5,
    prefetch=PREFETCH,
    concurrency=int(os.environ.get("TEST_CONCURRENCY", "2")),
    max_deliveries=int(os.environ.get("TEST_MAX_DELIVERIES", "50")),
)
_client: redis.Redis | None = None


def record(group: str, message: Message, pause: bool = True) -> None:
    global _client
    _client = client_of("REDRELAY_URL")
    if pause:
        time.sleep(0.001)
    _client.rpush(f"{NAMESPACE}:test:topic:{group}", message.body["n"])


def hold_if_ahead(message: Message) -> None:
    """From entry 100 on, block for good (until killed) in the first handler whose
    consumer holds a fetched-ahead batch: more entries after this one than its own batch
    can have (``prefetch - 1``). Records this entry's ``n`` in ``<ns>:test:held`` first."""
    if message.body["n"] < 100:
        return
    client = client_of("REDRELAY_URL")
    stream = relay.topic("events").keys.stream
    consumer = (message.delivery_tag or "").split(":")[0]
    pending = client.xpending_range(
        stream, "billing", min="-", max="+", count=1000, consumername=consumer
    )
    mine = _id(message.stream_id or "")
    later = [p for p in pending if _id(p["message_id"].decode()) > mine]
    if len(later) >= PREFETCH:
        client.set(f"{NAMESPACE}:test:held", message.body["n"])
        while True:
            time.sleep(60)


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


def billing(message: Message) -> None:
    if HOLD_AHEAD:
        hold_if_ahead(message)
    if message.body.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    record("billing", message)


def mail(message: Message) -> None:
    record("mail", message)


async def abilling(message: Message) -> None:
    """``billing`` as a coroutine (the sync Redis write is quick enough for a test)."""
    await asyncio.sleep(0.001)
    if message.body.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    record("billing", message, pause=False)


async def amail(message: Message) -> None:
    await asyncio.sleep(0.001)
    record("mail", message, pause=False)


_ASYNC = os.environ.get("TEST_ASYNC") == "1"
for _group in os.environ.get("TEST_GROUPS", "billing,mail").split(","):
    _handler = (
        {"billing": abilling, "mail": amail}
        if _ASYNC
        else {"billing": billing, "mail": mail}
    )[_group]
    relay.subscriber("events", group=_group, start="beginning")(_handler)
