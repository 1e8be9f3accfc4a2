"""A quick, idle channel handler is called on the listener thread (redrelay._subscriber):
in order, counted, and back on its own thread as soon as a call is slow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from redrelay import Message, Relay
from redrelay._subscriber import DIRECT_WITHIN
from redrelay.channel import Listener
from redrelay.handlers import Subscriber

from .channel_helpers import WAIT
from .processes import wait_for

LISTENER = "redrelay-channel-listener"
OWN = "redrelay-subscriber-channel-news"


@pytest.fixture
def listening(
    relay: Relay,
) -> Iterator[Callable[[Callable[[Message], None]], Listener]]:
    """``listening(handler)``: a connected Listener with one subscriber on "news"."""
    started: list[Listener] = []

    def start(handler: Callable[[Message], None]) -> Listener:
        listener = Listener(
            relay, [Subscriber(channel="news", pattern=False, handler=handler)]
        )
        started.append(listener)
        listener.start()
        assert listener.connected.wait(WAIT), "the listener did not subscribe"
        return listener

    yield start
    for listener in started:
        assert listener.stop(timeout=WAIT)


def test_a_quick_idle_handler_runs_on_the_listener_thread(
    relay: Relay, listening: Callable[..., Listener]
) -> None:
    seen: list[tuple[object, str]] = []

    def handler(message: Message) -> None:
        seen.append((message.body, threading.current_thread().name))

    listener = listening(handler)
    for n in range(20):  # one at a time: each finds the subscriber idle
        relay.publish("news", n)
        wait_for(lambda n=n: len(seen) == n + 1, what=f"message {n}")
    assert [body for body, _ in seen] == list(range(20))
    threads = [name for _, name in seen]
    assert threads[0] == OWN  # not known to be quick yet: its own thread
    # A call preempted for over a millisecond on a loaded machine sends the next one
    # back to the subscriber's thread; most are quick.
    assert LISTENER in threads
    assert set(threads) <= {OWN, LISTENER}
    assert listener.handled == 20 and listener.handler_errors == 0


def test_order_holds_when_direct_calls_and_queued_ones_mix(
    relay: Relay, listening: Callable[..., Listener]
) -> None:
    seen: list[int] = []
    threads: set[str] = set()

    def handler(message: Message) -> None:
        assert isinstance(message.body, int)
        threads.add(threading.current_thread().name)
        if message.body % 7 == 3:  # slow now and then: the next ones are queued
            time.sleep(DIRECT_WITHIN * 3)
        seen.append(message.body)

    listener = listening(handler)
    total = 150
    for n in range(total):
        relay.publish("news", n)
        if n % 10 in (0, 1):  # now and then one alone, on an idle subscriber: direct
            wait_for(lambda n=n: len(seen) == n + 1, what=f"message {n}")
    wait_for(lambda: len(seen) == total, what="every message")
    assert seen == list(range(total))
    assert threads == {OWN, LISTENER}
    assert listener.handled == total


def test_a_slow_call_sends_the_next_messages_to_its_own_thread(
    relay: Relay, listening: Callable[..., Listener]
) -> None:
    seen: list[tuple[object, str]] = []

    def handler(message: Message) -> None:
        if message.body == "slow":
            time.sleep(DIRECT_WITHIN * 10)
        seen.append((message.body, threading.current_thread().name))

    worker = listening(handler)._workers[0]
    n = 0
    # Quick calls until one ran on the listener thread and proved quick there.
    while not seen or seen[-1][1] != LISTENER or not worker.quick:
        assert n < 200, "no call ran on the listener thread"
        k = len(seen)
        relay.publish("news", n)
        wait_for(lambda k=k: len(seen) == k + 1, what=f"message {n}")
        n += 1
    relay.publish("news", "slow")
    wait_for(lambda: seen[-1][0] == "slow", what="the slow call")
    assert seen[-1][1] == LISTENER  # it was quick and idle: called directly
    relay.publish("news", "after")
    wait_for(lambda: seen[-1][0] == "after", what="the message after it")
    assert seen[-1][1] == OWN  # the slow call sent it back to its own thread


def test_a_burst_goes_through_the_queue_while_the_listener_reads_on(
    relay: Relay, listening: Callable[..., Listener]
) -> None:
    seen: list[tuple[object, str]] = []

    def handler(message: Message) -> None:
        seen.append((message.body, threading.current_thread().name))

    listening(handler)
    n = 0
    while not seen or seen[-1][1] != LISTENER:  # proved quick: called directly
        assert n < 200, "no call ran on the listener thread"
        k = len(seen)
        relay.publish("news", n)
        wait_for(lambda k=k: len(seen) == k + 1, what=f"message {n}")
        n += 1
    # 200 messages in one write: the listener finds more to read behind each one, so
    # they go through the subscriber's queue and thread, in order.
    burst = [f"b{i}".encode() for i in range(200)]
    with redis.Redis.from_url(relay.connection.url) as client:
        pipe = client.pipeline(transaction=False)
        for body in burst:
            pipe.publish(relay.channel("news").key, body)
        pipe.execute()
    wait_for(lambda: len(seen) == n + len(burst), what="the burst")
    assert [body for body, _ in seen[n:]] == burst
    assert OWN in {name for _, name in seen[n:]}
