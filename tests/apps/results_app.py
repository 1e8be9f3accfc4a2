"""A relay whose consumers store results, for worker subprocesses in tests (results.md).

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_RESULT_TTL (seconds, default 60),
TEST_PREFETCH, TEST_CONCURRENCY. Every handler start is recorded in ``<ns>:test:ran``
(a list of message ids), so tests can check what ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

from redrelay import Message, Relay
from tests.apps.clients import client_of

NAMESPACE = os.environ.get("TEST_NAMESPACE", "test-results")
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=2.0,
    heartbeat=0.4,
    retries=2,
    backoff=0.01,
    prefetch=int(os.environ.get("TEST_PREFETCH", "10")),
    concurrency=int(os.environ.get("TEST_CONCURRENCY", "2")),
)
RESULT_TTL = float(os.environ.get("TEST_RESULT_TTL", "60"))
RAN = f"{NAMESPACE}:test:ran"
_client: redis.Redis | None = None


def ran(message: Message) -> None:
    global _client
    _client = client_of("REDRELAY_URL")
    _client.rpush(RAN, message.id)


@relay.consumer("calc", result_ttl=RESULT_TTL)
def calc(message: Message) -> Any:
    body = message.body
    op = body.get("op")
    if body.get("record", True):
        ran(message)
    if op == "add":
        if body.get("s"):
            time.sleep(body["s"])
        return body["a"] + body["b"]
    if op == "fail":
        raise ValueError(f"asked to fail ({body.get('n')})")
    if op == "sleep":
        time.sleep(float(body["s"]))
        return "slept"
    if op == "until-cancelled":
        deadline = time.monotonic() + float(body.get("s", 30))
        while time.monotonic() < deadline:
            message.raise_if_cancelled()
            time.sleep(0.01)
        return "not cancelled"
    return body.get("value")


@relay.consumer("acalc", result_ttl=RESULT_TTL, concurrency=20)
async def acalc(message: Message) -> Any:
    body = message.body
    ran(message)
    if body.get("op") == "fail":
        raise ValueError("async failure")
    await asyncio.sleep(float(body.get("s", 0)))
    return body.get("value")


@relay.task(queue="tasks.mul", result_ttl=RESULT_TTL)
def mul(a: int, b: int) -> int:
    return a * b
