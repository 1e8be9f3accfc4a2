"""Sending on commit, and the outbox: rollbacks send nothing; outages lose nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import transaction
from django.test import Client
from django.utils import timezone

from redrelay import InvalidName, MessageTooLarge, Relay
from redrelay._server import RedisServer
from redrelay.contrib.django import (
    enqueue_on_commit,
    flush_outbox,
    get_relay,
    publish_on_commit,
)
from redrelay.contrib.django.models import OutboxMessage
from redrelay.contrib.django.outbox import OUTBOX_MAX_ATTEMPTS, OutboxRelay

from ...processes import wait_for
from .conftest import runs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listen(app_relay: Relay) -> Iterator[Callable[[str], list[Any]]]:
    """listen(channel) -> a list that fills with the channel's raw Redis messages."""
    client = redis.Redis.from_url(app_relay.url or "")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    received: list[Any] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def pump() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.05)
            if message is not None:
                received.append(message["data"])

    def start(channel: str) -> list[Any]:
        pubsub.subscribe(f"{app_relay.namespace}:{channel}")
        pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        threads.append(threading.Thread(target=pump, daemon=True))
        threads[-1].start()
        return received

    yield start
    stop.set()
    for thread in threads:
        thread.join()
    pubsub.close()
    client.close()


def test_enqueue_on_commit_sends_after_the_commit_only(app_relay: Relay) -> None:
    jobs = app_relay.queue("jobs")
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 1}, headers={"trace": "t1"})
        assert jobs.stats().ready == 0
    assert jobs.stats().ready == 1
    [message] = jobs.peek()
    assert (message.body, message.headers) == ({"n": 1}, {"trace": "t1"})


def test_a_rollback_sends_nothing(app_relay: Relay) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit("jobs", {"n": 1})
        enqueue_on_commit("jobs", {"n": 2}, outbox=True)
        raise RuntimeError("rolled back")
    assert app_relay.queue("jobs").stats().ready == 0
    assert OutboxMessage.objects.count() == 0


def test_outside_a_transaction_it_sends_at_once(app_relay: Relay) -> None:
    enqueue_on_commit("jobs", {"n": 1}, delay=60)
    assert app_relay.queue("jobs").stats().delayed == 1


def test_a_view_enqueues_and_publishes_only_when_its_transaction_commits(
    app_relay: Relay, listen: Callable[[str], list[Any]]
) -> None:
    heard = listen("news")
    assert Client().get("/order/?fail=1").status_code == 200
    assert app_relay.queue("jobs").stats().ready == 0
    assert Client().get("/order/").status_code == 200
    assert app_relay.queue("jobs").stats().ready == 1
    wait_for(lambda: len(heard) == 1, timeout=5, what="the published event")
    assert b"ordered" in heard[0]


def test_publish_on_commit_reaches_subscribers(app_relay: Relay) -> None:
    app_relay.start(queues=[])  # the test app's "news" subscriber, in this process
    try:
        listener = app_relay._runner._listener  # type: ignore[union-attr]
        assert listener is not None
        wait_for(listener.connected.is_set, timeout=5)
        with transaction.atomic():
            publish_on_commit("news", {"text": "hello"})
        with transaction.atomic():
            publish_on_commit("news", {"text": "via the outbox"}, outbox=True)
        wait_for(lambda: len(runs(app_relay)) == 2, timeout=5, what="two events")
    finally:
        app_relay.stop()
    assert [r[0] for r in runs(app_relay)] == ["news", "news"]


def test_bad_input_fails_in_the_caller_with_nothing_written(
    settings: Any, namespace: str, redrelay_url: str
) -> None:
    settings.REDRELAY = {
        "default": {
            "URL": redrelay_url,
            "NAMESPACE": namespace,
            "OPTIONS": {"max_message_size": 100},
        }
    }
    with transaction.atomic():
        with pytest.raises(MessageTooLarge):
            enqueue_on_commit("jobs", {"text": "x" * 200}, outbox=True)
        with pytest.raises(MessageTooLarge):
            publish_on_commit("news", {"text": "x" * 200})
        with pytest.raises(InvalidName):
            enqueue_on_commit("no spaces", {"n": 1})
        with pytest.raises(TypeError):
            enqueue_on_commit("jobs", {1, 2})
        with pytest.raises(ValueError, match="not both"):
            enqueue_on_commit("jobs", 1, delay=1, eta=timezone.now())
    assert OutboxMessage.objects.count() == 0
    assert get_relay().queue("jobs").stats().ready == 0


def test_the_outbox_row_is_written_in_the_transaction_and_sent_after_it(
    app_relay: Relay,
) -> None:
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 1}, outbox=True, dedup_key="order-1")
        row = OutboxMessage.objects.get()
        assert (row.kind, row.name, row.body, row.dedup_key) == (
            "queue",
            "jobs",
            {"n": 1},
            "order-1",
        )
        assert app_relay.queue("jobs").stats().ready == 0
    assert OutboxMessage.objects.count() == 0
    assert app_relay.queue("jobs").stats().ready == 1


def test_the_outbox_setting_makes_it_the_default(
    settings: Any, namespace: str, redrelay_url: str
) -> None:
    settings.REDRELAY = {
        "default": {"URL": redrelay_url, "NAMESPACE": namespace, "OUTBOX": True}
    }
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 1})
        assert OutboxMessage.objects.count() == 1
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 2}, outbox=False)
        assert OutboxMessage.objects.count() == 0
    assert get_relay().queue("jobs").stats().ready == 2


def test_a_delay_through_the_outbox_counts_from_the_write(app_relay: Relay) -> None:
    before = timezone.now()
    with transaction.atomic():
        enqueue_on_commit("jobs", {"n": 1}, outbox=True, delay=timedelta(minutes=5))
        eta = OutboxMessage.objects.get().eta
        assert (
            before + timedelta(minutes=5)
            <= eta
            <= timezone.now() + timedelta(minutes=5)
        )
    stats = app_relay.queue("jobs").stats()
    assert (stats.ready, stats.delayed) == (0, 1)


def test_a_redis_outage_at_commit_time_loses_nothing_and_sends_once(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    relay = get_relay()
    relay.queue("jobs").stats()  # connected before the outage
    own_server.stop()
    with caplog.at_level(logging.WARNING, "redrelay.django.outbox"):
        with transaction.atomic():
            enqueue_on_commit("jobs", {"op": "ok", "n": 1})
            publish_on_commit("news", {"text": "late"})
        # The commit went through; the messages wait in the table.
    assert OutboxMessage.objects.count() == 2
    assert "waits for the outbox relay" in caplog.text
    with pytest.raises(Exception, match="cannot reach Redis"):
        flush_outbox()
    assert OutboxMessage.objects.count() == 2

    own_server.start()
    assert flush_outbox() == 2
    assert flush_outbox() == 0
    assert OutboxMessage.objects.count() == 0
    relay.drain(["jobs"])
    done = [r for r in runs(relay) if r[0] == "jobs" and r[3] == "done"]
    assert len(done) == 1


def test_a_row_sent_twice_is_enqueued_once(app_relay: Relay) -> None:
    """A crash between the put and the delete sends the row again: dedup_key absorbs it."""
    from redrelay.contrib.django.outbox import _send

    row = OutboxMessage.objects.create(name="jobs", body={"n": 1})
    _send(row)  # the put of a relay that then died before its commit
    assert flush_outbox() == 1
    assert app_relay.queue("jobs").stats().ready == 1


def test_the_outbox_relay_thread_sends_what_waited_for_redis(
    own_server: RedisServer,
) -> None:
    relay = get_relay()
    own_server.stop()
    for n in range(3):
        with transaction.atomic():
            enqueue_on_commit("jobs", {"n": n})
    assert OutboxMessage.objects.count() == 3
    outbox = OutboxRelay(poll=0.05)
    outbox.start()
    try:
        own_server.start()
        wait_for(lambda: outbox.sent == 3, timeout=10, what="the outbox relay")
    finally:
        outbox.stop()
    assert OutboxMessage.objects.count() == 0
    assert [m.body for m in relay.queue("jobs").peek()] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_rows_that_keep_failing_are_set_aside(
    app_relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    OutboxMessage.objects.create(name="jobs", body="x" * 2_000_000)  # over 1 MiB
    OutboxMessage.objects.create(name="jobs", body={"n": 2})
    with caplog.at_level(logging.ERROR, "redrelay.django.outbox"):
        assert flush_outbox() == 1  # one attempt per pass: the relay polls again
        assert [flush_outbox() for _ in range(OUTBOX_MAX_ATTEMPTS)] == [0] * 5
    bad = OutboxMessage.objects.get()
    assert bad.attempts == OUTBOX_MAX_ATTEMPTS  # left alone from now on
    assert "the limit is 1048576 bytes" in bad.last_error
    assert "could not be sent (attempt 5 of 5)" in caplog.text
    assert app_relay.queue("jobs").stats().ready == 1


def test_flush_outbox_by_alias(
    settings: Any,
    namespace: str,
    redrelay_url: str,
    make_relay: Callable[..., Relay],
) -> None:
    settings.REDRELAY = {
        "default": {"URL": redrelay_url, "NAMESPACE": namespace},
        "other": {"URL": redrelay_url, "NAMESPACE": make_relay().namespace},
    }
    OutboxMessage.objects.create(name="jobs", body=1)
    OutboxMessage.objects.create(alias="other", name="jobs", body=2)
    assert flush_outbox(aliases=["other"]) == 1
    assert get_relay("other").queue("jobs").stats().ready == 1
    assert get_relay().queue("jobs").stats().ready == 0
