"""A relay for worker subprocesses that log in as a namespace-limited ACL user.

Environment: REDRELAY_URL (the limited user), TEST_NAMESPACE, TEST_RECORD_URL (an admin
URL: the bookkeeping below is the test's, not redrelay's, so it must not widen the user's
permissions). Every handler run is recorded in ``<ns>:test:runs`` as "<id> <pid> <event>
<attempt>"; every channel message in ``<ns>:test:events``.
"""

from __future__ import annotations

import os
import signal
import time

import redis

from redrelay import Message, Relay

NAMESPACE = os.environ["TEST_NAMESPACE"]
relay = Relay(
    os.environ["REDRELAY_URL"],
    namespace=NAMESPACE,
    lease=1.0,
    heartbeat=0.2,
    prefetch=10,
    concurrency=2,
    retries=1,
    backoff=0.01,
)
_client = redis.Redis.from_url(os.environ["TEST_RECORD_URL"])


@relay.consumer("work")
def work(message: Message) -> None:
    op = message.body.get("op", "ok") if isinstance(message.body, dict) else "raw"
    _client.rpush(
        f"{NAMESPACE}:test:runs",
        f"{message.id} {os.getpid()} start {message.attempt}",
    )
    if op == "sleep":
        time.sleep(float(message.body["s"]))
    elif op == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    _client.rpush(
        f"{NAMESPACE}:test:runs", f"{message.id} {os.getpid()} done {message.attempt}"
    )


@relay.subscriber("events.*", pattern=True)
def on_event(message: Message) -> None:
    _client.rpush(f"{NAMESPACE}:test:events", f"{message.channel} {message.body}")
