"""A relay for worker subprocesses on a Redis Cluster (tests/cluster).

Environment: REDRELAY_URL (redis+cluster://), TEST_NAMESPACE, TEST_SHARDS, TEST_RECORD_URL
(a plain server where every finished run is recorded as "<id> <pid>" in
``<ns>:test:done``, so the record survives whatever happens to the cluster or the worker).
"""

from __future__ import annotations

import os

import redis

from redrelay import Message, Relay
from tests.apps.clients import client_of

NAMESPACE = os.environ.get("TEST_NAMESPACE", "cluster-app")
relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=NAMESPACE,
    lease=2.0,
    heartbeat=0.4,
    prefetch=20,
    concurrency=4,
)
DONE = f"{NAMESPACE}:test:done"
_client: redis.Redis | None = None


@relay.consumer("hot", shards=int(os.environ.get("TEST_SHARDS", "8")))
def hot(message: Message) -> None:
    global _client
    _client = client_of("TEST_RECORD_URL")
    _client.rpush(DONE, f"{message.id} {os.getpid()}")
