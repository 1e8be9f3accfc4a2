"""A relay for flow-limit tests in worker subprocesses.

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_LEASE (seconds), TEST_CONCURRENCY
(threads), TEST_PREFETCH, TEST_RATE_LIMIT ("100/s"), TEST_CONCURRENCY_LIMIT. Each handler run adds its
message id to the ``<ns>:test:running`` sorted set (scored by pid) while it runs, and
records "<id> <pid> <start time> <running then>" in ``<ns>:test:log``: the gauge the
tests check a concurrency limit against. A body ``{"s": 0.2}`` sleeps that long.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from redrelay import Message, Relay
from tests.apps.clients import client_of

NAMESPACE = os.environ.get("TEST_NAMESPACE", "test-limits")
LEASE = float(os.environ.get("TEST_LEASE", "2"))
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=LEASE,
    heartbeat=LEASE / 5,
    concurrency=int(os.environ.get("TEST_CONCURRENCY", "2")),
    prefetch=int(os.environ.get("TEST_PREFETCH", "10")),
    retries=0,
)
LOG, RUNNING = f"{NAMESPACE}:test:log", f"{NAMESPACE}:test:running"
_client: redis.Redis | None = None
options: dict[str, Any] = {}
if os.environ.get("TEST_RATE_LIMIT"):
    options["rate_limit"] = os.environ["TEST_RATE_LIMIT"]
if os.environ.get("TEST_CONCURRENCY_LIMIT"):
    options["concurrency_limit"] = int(os.environ["TEST_CONCURRENCY_LIMIT"])


@relay.consumer("limited", **options)
def handle(message: Message) -> None:
    global _client
    _client = client_of("REDRELAY_URL")
    started = time.time()
    pipe = _client.pipeline(transaction=True)
    pipe.zadd(RUNNING, {message.id: os.getpid()})
    pipe.zcard(RUNNING)
    _, running = pipe.execute()
    _client.rpush(LOG, f"{message.id} {os.getpid()} {started:.6f} {running}")
    body = message.body if isinstance(message.body, dict) else {}
    time.sleep(float(body.get("s", 0)))
    _client.zrem(RUNNING, message.id)
