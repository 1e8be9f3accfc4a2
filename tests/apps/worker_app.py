"""A relay for worker subprocesses in tests; behaviour is chosen by each message's body.

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_LEASE (seconds), TEST_MAX_DELIVERIES,
TEST_PREFETCH, TEST_CONCURRENCY, TEST_ASYNC (1: the handler is an ``async def``, run as
coroutines on the worker's event loop, TEST_CONCURRENCY of them at once). Every handler run is recorded in ``<ns>:test:runs``
(a list of "<id> <pid> <event>") so tests can check what ran, where and how often.
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
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=float(os.environ.get("TEST_LEASE", "2")),
    heartbeat=float(os.environ.get("TEST_LEASE", "2")) / 5,
    max_deliveries=int(os.environ.get("TEST_MAX_DELIVERIES", "5")),
    prefetch=int(os.environ.get("TEST_PREFETCH", "10")),
    concurrency=int(os.environ.get("TEST_CONCURRENCY", "2")),
    retries=2,
    backoff=0.01,
)
RUNS = f"{NAMESPACE}:test:runs"
_client: redis.Redis | None = None


def record(message: Message, event: str) -> None:
    global _client
    _client = client_of("REDRELAY_URL")
    _client.rpush(RUNS, f"{message.id} {os.getpid()} {event} {message.attempt}")


def work(message: Message) -> None:
    body = message.body if isinstance(message.body, dict) else {"op": "raw"}
    op = body.get("op", "ok")
    record(message, "start")
    if op == "sleep":
        time.sleep(float(body["s"]))
    elif op == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    elif op == "fail":
        raise RuntimeError("asked to fail")
    record(message, "done")


async def awork(message: Message) -> None:
    """``work`` as a coroutine: the same ops, sleeping with ``asyncio.sleep``."""
    body = message.body if isinstance(message.body, dict) else {"op": "raw"}
    op = body.get("op", "ok")
    record(message, "start")
    if op == "sleep":
        await asyncio.sleep(float(body["s"]))
    elif op == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    elif op == "fail":
        raise RuntimeError("asked to fail")
    record(message, "done")


relay.consumer("work")(awork if os.environ.get("TEST_ASYNC") == "1" else work)
