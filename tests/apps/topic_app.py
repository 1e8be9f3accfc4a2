"""A relay with topic subscribers for worker subprocesses in tests.

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_LEASE (seconds). Two groups of the topic
``events`` record each body's ``n`` in ``<ns>:test:topic:<group>`` (a list) once done.
"""

from __future__ import annotations

import os
import time

import redis

from redrelay import Message, Relay

NAMESPACE = os.environ.get("TEST_NAMESPACE", "test-app")
LEASE = float(os.environ.get("TEST_LEASE", "2"))
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=LEASE,
    heartbeat=LEASE / 5,
    prefetch=10,
    concurrency=2,
    max_deliveries=50,
)
_client: redis.Redis | None = None


def record(group: str, message: Message) -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDRELAY_URL"])
    time.sleep(0.001)
    _client.rpush(f"{NAMESPACE}:test:topic:{group}", message.body["n"])


@relay.subscriber("events", group="billing", start="beginning")
def billing(message: Message) -> None:
    record("billing", message)


@relay.subscriber("events", group="mail", start="beginning")
def mail(message: Message) -> None:
    record("mail", message)
