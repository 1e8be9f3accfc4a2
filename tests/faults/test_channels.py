"""Channels under faults: pub/sub is at-most-once, so every loss must be *reported*.

The invariant checked: the messages a subscriber did not receive are exactly the ones
its gap reports count (the sum of ``missed`` equals published minus received).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import orjson
import redis

from redrelay import Relay
from redrelay._server import RedisServer
from redrelay.channel import GapReport, Listener
from redrelay.handlers import Subscriber
from redrelay.message import Message

from .workers import FaultWorker, report, wait_for


class Publisher(threading.Thread):
    """Publishes 0, 1, 2 ... on one thread (one sequence) every ``interval`` seconds."""

    def __init__(self, relay: Relay, interval: float) -> None:
        super().__init__(daemon=True, name="faults-publisher")
        self.relay = relay
        self.interval = interval
        self.published = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.relay.publish("events", self.published)
            self.published += 1
            self.stop.wait(self.interval)

    def finish(self) -> int:
        self.stop.set()
        self.join(10)
        return self.published


def test_killed_subscriber_connection_resubscribes_and_reports_every_gap(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """CLIENT KILL TYPE pubsub every second while publishing 200 messages a second."""
    server = redis_server_factory(appendonly=False)
    admin = redis.Redis.from_url(server.url)
    reports: list[GapReport] = []
    relay = Relay(server.url, namespace="faults-ch", on_gap=reports.append)
    received: list[int] = []

    def on_event(message: Message) -> None:
        received.append(message.body)

    listener = Listener(
        relay, [Subscriber(channel="events", pattern=False, handler=on_event)]
    )
    listener.start()
    publisher = Publisher(relay, 0.005)
    try:
        assert listener.connected.wait(10)
        publisher.start()
        latencies = []
        for k in range(1, 6):
            time.sleep(1)  # 200 messages between kills
            t_kill = time.monotonic()
            assert admin.client_kill_filter(_type="pubsub") == 1
            wait_for(
                lambda: listener.reconnects == k and listener.connected.is_set(),  # noqa: B023
                timeout=5,
                interval=0.002,
                what="resubscribed",
            )
            latencies.append(time.monotonic() - t_kill)
        time.sleep(0.5)  # the next messages reveal the last gap
        published = publisher.finish()
        wait_for(
            lambda: len(received) + listener.missed == published,
            timeout=5,
            what="every message received or reported",
        )
    finally:
        publisher.stop.set()
        assert listener.stop(10)
    missed = sum(r.missed for r in reports if r.missed is not None)
    reconnects = [r for r in reports if r.reason.startswith("reconnected after")]
    report(
        "channel_kills",
        kills=5,
        published=published,
        received=len(received),
        missed_reported=missed,
        max_resubscribe_s=round(max(latencies), 3),
    )
    assert missed == published - len(received)
    assert len(reconnects) == 5
    assert max(latencies) < 1.0
    assert received == sorted(received)  # at most once, in order


def _received(history_url: str, namespace: str) -> list[int]:
    with redis.Redis.from_url(history_url) as client:
        return [
            int(r.split()[0]) for r in client.lrange(f"{namespace}:received", 0, -1)
        ]


def _gaps(history_url: str, namespace: str) -> list[dict[str, object]]:
    with redis.Redis.from_url(history_url) as client:
        return [orjson.loads(r) for r in client.lrange(f"{namespace}:gaps", 0, -1)]


def test_slow_subscriber_cut_off_by_the_output_buffer_limit_reports_the_gap(
    redis_server_factory: Callable[..., RedisServer],
    history_server: RedisServer,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    """A subscriber process that stops reading (SIGSTOP) while 2 KB messages pour in is
    disconnected by the server (``client-output-buffer-limit pubsub 64kb 32kb 1``); once
    it runs again it reconnects, resubscribes and reports what it missed."""
    server = redis_server_factory(appendonly=False)
    admin = redis.Redis.from_url(server.url)
    admin.config_set("client-output-buffer-limit", "pubsub 64kb 32kb 1")
    relay = Relay(server.url, namespace=namespace)
    key = f"{namespace}:events"
    subscriber = spawn(server.url, FAULTS_QUEUE="", FAULTS_CHANNEL="events")
    wait_for(lambda: admin.pubsub_numsub(key)[0][1] == 1, what="subscribed")
    published = 0

    def publish(n: int, pad: int = 0) -> int:
        nonlocal published
        receivers = 0
        for _ in range(n):
            receivers = relay.publish("events", {"n": published, "pad": "x" * pad})
            published += 1
        return receivers

    publish(20)
    wait_for(lambda: len(_received(history_server.url, namespace)) == 20, what="warm")
    subscriber.signal(signal.SIGSTOP)
    flood = 0
    while publish(10, pad=2000) == 1:  # until the server drops the subscriber
        flood += 10
        assert flood < 50_000, "the server never enforced the output buffer limit"
    subscriber.signal(signal.SIGCONT)
    wait_for(lambda: admin.pubsub_numsub(key)[0][1] == 1, what="resubscribed")
    publish(20)
    wait_for(
        lambda: (
            len(_received(history_server.url, namespace))
            + sum(int(g["missed"] or 0) for g in _gaps(history_server.url, namespace))  # type: ignore[call-overload]
            == published
        ),
        timeout=10,
        what="every message received or reported",
    )
    got = _received(history_server.url, namespace)
    gaps = _gaps(history_server.url, namespace)
    missed = sum(int(g["missed"] or 0) for g in gaps)  # type: ignore[call-overload]
    report(
        "slow_subscriber",
        published=published,
        received=len(got),
        missed_reported=missed,
        flood_messages=flood + 10,
        gap_reports=[str(g["reason"])[:40] for g in gaps],
    )
    assert missed == published - len(got) > 0
    assert any(str(g["reason"]).startswith("reconnected after") for g in gaps)
    assert got == sorted(got) and got[-20:] == list(range(published - 20, published))
    assert "output buffer limits" in server.log_tail(200)
