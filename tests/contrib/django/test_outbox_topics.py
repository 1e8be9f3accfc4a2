"""The outbox for topics, what a channel row promises, and sends during an outage (issue 16)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction

from redrelay import Relay
from redrelay._server import RedisServer
from redrelay.contrib.django import flush_outbox, get_relay, publish_on_commit
from redrelay.contrib.django.models import OutboxMessage
from redrelay.contrib.django.outbox import (
    OUTBOX_HEADER,
    OutboxRelay,
    enqueue_on_commit,
)
from redrelay.protocol.envelope import decode_entry

from ...worker.helpers import wait_for
from .conftest import DjangoWorker, runs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_on(namespace: str) -> Iterator[Callable[[str], DjangoWorker]]:
    started: list[DjangoWorker] = []

    def start(url: str) -> DjangoWorker:
        started.append(DjangoWorker(url, namespace))
        return started[-1]

    yield start
    for worker in started:
        worker.close()


def stream(relay: Relay, topic: str) -> list[dict[str, Any]]:
    """The envelopes in a topic's stream, oldest first ({"b": body, "h": headers, ...})."""
    entries = relay.connection.call("XRANGE", relay.topic(topic).keys.stream, "-", "+")
    out = []
    for _id, fields in entries:
        envelope = decode_entry(fields[b"e"]).envelope
        assert envelope is not None
        out.append(envelope)
    return out


def heard(relay: Relay, where: str) -> list[str]:
    return [r[1] for r in runs(relay) if r[0] == where and r[3] == "heard"]


def test_publish_on_commit_to_a_topic(app_relay: Relay) -> None:
    with transaction.atomic():
        publish_on_commit("orders", {"n": 1}, topic=True, headers={"k": "v"})
        assert stream(app_relay, "orders") == []
    with transaction.atomic():
        publish_on_commit("orders", {"n": 2}, topic=True, outbox=True)
        row = OutboxMessage.objects.get()
        assert row.kind == "topic"
    assert OutboxMessage.objects.count() == 0
    entries = stream(app_relay, "orders")
    assert [e["b"] for e in entries] == [{"n": 1}, {"n": 2}]
    assert entries[0]["h"] == {"k": "v"}
    assert entries[1]["h"] == {OUTBOX_HEADER: str(row.uid)}


def test_a_topic_event_committed_during_an_outage_reaches_the_subscriber(
    own_server: RedisServer, worker_on: Callable[[str], DjangoWorker]
) -> None:
    """Redis stopped, an event committed, Redis restarted: the worker's group gets it."""
    relay = get_relay()
    worker = worker_on(own_server.url)
    # The worker's group exists once it hears a first event (published with Redis up).
    wait_for(
        lambda: relay.topic("orders").publish({"n": 0}) and heard(relay, "orders"),
        interval=0.2,
        timeout=30,
        what="the worker's topic subscriber",
    )

    own_server.stop()
    with transaction.atomic():
        publish_on_commit("orders", {"n": 1}, topic=True)
    assert OutboxMessage.objects.count() == 1  # waits for the worker's outbox relay

    own_server.start()

    def committed() -> list[str]:
        return [e["i"] for e in stream(relay, "orders") if e["b"] == {"n": 1}]

    wait_for(lambda: committed(), timeout=30, what="the outbox relay's publish")
    [event_id] = committed()  # once
    wait_for(
        lambda: event_id in heard(relay, "orders"),
        timeout=30,
        what="the event committed during the outage",
    )
    wait_for(lambda: OutboxMessage.objects.count() == 0, what="the row's delete")
    assert heard(relay, "orders").count(event_id) == 1, worker.output()


def test_after_a_failed_send_later_sends_go_straight_to_the_outbox(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    get_relay().queue("jobs").stats()  # connected before the outage
    own_server.stop()
    with caplog.at_level(logging.INFO, "redrelay.django.outbox"):
        with transaction.atomic():
            enqueue_on_commit("jobs", {"n": 1})
            enqueue_on_commit("jobs", {"n": 2})
            publish_on_commit("orders", {"n": 3}, topic=True)
    tried = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    skipped = [r for r in caplog.records if "a moment ago" in r.getMessage()]
    assert (len(tried), len(skipped)) == (1, 2)  # one attempt, not one per row
    assert OutboxMessage.objects.count() == 3
    own_server.start()
    assert flush_outbox() == 3
    assert get_relay().queue("jobs").stats().ready == 2


def test_the_outbox_relay_holds_channel_rows_while_listeners_resubscribe(
    own_server: RedisServer,
) -> None:
    get_relay().queue("jobs").stats()
    own_server.stop()
    with transaction.atomic():
        publish_on_commit("news", {"n": 1})
        enqueue_on_commit("jobs", {"n": 2})
    outbox = OutboxRelay(channel_grace=0.5)
    assert outbox.step() == 0  # Redis is down
    own_server.start()
    assert outbox.step() == 1  # the queue row at once...
    assert OutboxMessage.objects.get().kind == "channel"  # ...the channel row waits
    wait_for(lambda: outbox.step() == 1, what="the channel row, after the grace")
    assert OutboxMessage.objects.count() == 0


def test_the_pass_that_finds_redis_back_holds_channel_rows(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The grace after an outage covers the very pass that ends it: a new user's
    channel event went out in that pass, before the worker's listener resubscribed."""
    get_relay().queue("jobs").stats()
    own_server.stop()
    with transaction.atomic():
        publish_on_commit("news", {"n": 1})
    outbox = OutboxRelay(channel_grace=0.0)  # no hold but the outage's own pass
    with caplog.at_level(logging.WARNING, "redrelay.django.outbox"):
        assert outbox.step() == 0  # Redis is down
        assert outbox.step() == 0  # still down, and only the held channel row waits
    assert not [r for r in caplog.records if "sending again" in r.getMessage()]
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 2})
    own_server.start()
    assert outbox.step() == 1  # Redis is back: the queue row only
    assert OutboxMessage.objects.get().kind == "channel"
    assert outbox.step() == 1  # the next pass, once the (here empty) grace is over
    assert OutboxMessage.objects.count() == 0
