"""Pub/sub channels against a real redis-server: publishing, the listener, gaps."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redrelay import (
    ConfigurationError,
    EncodeError,
    InvalidName,
    Message,
    MessageTooLarge,
    Relay,
)
from redrelay import channel as channel_module
from redrelay._server import RedisServer
from redrelay.channel import Channel, GapReport, Listener
from redrelay.handlers import Subscriber
from redrelay.protocol.envelope import decode_entry, encode_entry
from redrelay.protocol.keys import channel_key

from .channel_helpers import WAIT, Collector, wait_for

# Small intervals so that loss detection and reconnects happen within a test.
FAST: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.5,
    "backoff_base": 0.02,
    "backoff_cap": 0.2,
    "poll_interval": 0.02,
}

StartListener = Callable[..., Listener]


def sub(channel: str, handler: Any, *, pattern: bool = False) -> Subscriber:
    return Subscriber(channel=channel, pattern=pattern, handler=handler)


#: Threads alive when the running test started: not its own (a handler abandoned by
#: an earlier test's time limit may still be blocked in C).
_before: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _threads_before() -> None:
    _before.clear()
    _before.update(threading.enumerate())


def _redrelay_threads() -> list[threading.Thread]:
    """The redrelay threads this test started that are still alive."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("redrelay-") and t not in _before
    ]


@pytest.fixture
def listen() -> Iterator[StartListener]:
    """``listen(relay, *subscribers, **options)``: a started, connected Listener.

    At teardown each one is stopped, and no listener or subscriber thread may remain.
    """
    started: list[Listener] = []

    def start(relay: Relay, *subscribers: Subscriber, **options: Any) -> Listener:
        listener = Listener(relay, subscribers, **{**FAST, **options})
        started.append(listener)
        listener.start()
        assert listener.connected.wait(WAIT), "the listener did not subscribe"
        return listener

    yield start
    for listener in started:
        assert listener.stop(timeout=WAIT)
    assert _redrelay_threads() == []


@pytest.fixture
def gap_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="redrelay.channel")
    return caplog


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "redrelay.channel" and r.levelno == logging.WARNING
    ]


# -- publishing and receiving ----------------------------------------------------


def test_publish_json_body_with_headers(relay: Relay, listen: StartListener) -> None:
    got = Collector()
    listen(relay, sub("news", got))
    before = time.time()

    receivers = relay.channel("news").publish(
        {"title": "hello", "n": [1, 2.5, None]}, headers={"trace": "abc"}
    )

    assert receivers == 1
    [message] = got.wait(1)
    assert message.body == {"title": "hello", "n": [1, 2.5, None]}
    assert message.headers == {"trace": "abc"}
    assert message.channel == "news"
    assert message.queue is None
    assert message.raw is False
    assert len(message.id) == 23
    assert before - 1 <= message.enqueued_at <= time.time() + 1


def test_relay_publish_and_subscriber_decorator(
    relay: Relay, listen: StartListener
) -> None:
    got = Collector()
    relay.subscriber("alerts")(got)
    listen(relay, *relay.subscribers)

    assert relay.publish("alerts", "disk full") == 1
    assert relay.publish("alerts", 42) == 1

    got.wait(2)
    assert got.bodies == ["disk full", 42]
    assert got.messages[0].headers == {}


def test_publish_without_subscribers_returns_zero(relay: Relay) -> None:
    assert relay.channel("nobody").publish({"x": 1}) == 0


def test_channel_object(relay: Relay) -> None:
    channel = relay.channel("news")
    assert relay.channel("news") is channel
    assert isinstance(channel, Channel)
    assert channel.name == "news"
    assert channel.key == channel_key(relay.namespace, "news")
    assert "news" in repr(channel)


def test_wire_format_is_the_envelope_entry(relay: Relay) -> None:
    client = redis.Redis.from_url(relay.connection.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
    try:
        pubsub.subscribe(channel_key(relay.namespace, "wire"))
        assert relay.publish("wire", {"a": 1}, headers={"h": "v"}) == 1
        relay.publish("wire", {"a": 2})
        raw: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(raw) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                raw.append(message["data"])
    finally:
        pubsub.close()
        client.close()

    first, second = (decode_entry(entry).envelope for entry in raw)
    assert first is not None and second is not None
    assert set(first) == {"i", "b", "h", "t", "p", "s"}
    assert first["b"] == {"a": 1} and first["h"] == {"h": "v"}
    assert "h" not in second
    assert first["p"] == second["p"]
    assert (first["s"], second["s"]) == (1, 2)
    assert abs(first["t"] / 1000 - time.time()) < 60


def test_pattern_subscription_gives_the_concrete_channel(
    relay: Relay, listen: StartListener
) -> None:
    got = Collector()
    listen(relay, sub("orders.*", got, pattern=True))

    relay.publish("orders.created", {"id": 1})
    relay.publish("invoices.created", {"id": 2})  # does not match
    relay.publish("orders.paid", {"id": 3})

    got.wait(2)
    assert [(m.channel, m.body) for m in got.messages] == [
        ("orders.created", {"id": 1}),
        ("orders.paid", {"id": 3}),
    ]


def test_channel_and_pattern_on_one_connection(
    relay: Relay, listen: StartListener
) -> None:
    by_name, by_pattern, also_by_name = Collector(), Collector(), Collector()
    listener = listen(
        relay,
        sub("orders.created", by_name),
        sub("orders.*", by_pattern, pattern=True),
        sub("orders.created", also_by_name),
    )

    # One SUBSCRIBE and one PSUBSCRIBE on one connection: Redis counts two receivers.
    assert relay.publish("orders.created", 1) == 2
    assert relay.publish("orders.created", 2) == 2

    for got in (by_name, by_pattern, also_by_name):
        got.wait(2)
        assert got.bodies == [1, 2]
    # Sequences are tracked per subscription: the double delivery is not a gap.
    assert listener.gaps == 0
    assert listener.received == 4


def test_raw_publish_from_another_program(relay: Relay, listen: StartListener) -> None:
    got = Collector()
    listen(relay, sub("news", got), sub("n*", got, pattern=True))

    # What `redis-cli PUBLISH <namespace>:news hello` sends.
    key = channel_key(relay.namespace, "news")
    assert relay.connection.call("PUBLISH", key, b"hello") == 2

    first, second = got.wait(2)
    for message in (first, second):
        assert message.raw is True
        assert message.body == b"hello"
        assert message.channel == "news"
        assert message.headers == {}
        assert len(message.id) == 23


def test_signed_subscribers_drop_unsigned_and_forged_messages(
    make_relay: Callable[..., Relay], listen: StartListener
) -> None:
    subscriber = make_relay(signing_key="k" * 32)
    signed = make_relay(namespace=subscriber.namespace, signing_key="k" * 32)
    forger = make_relay(namespace=subscriber.namespace, signing_key="x" * 32)
    plain = make_relay(namespace=subscriber.namespace)
    got = Collector()
    listener = listen(subscriber, sub("news", got))
    forger.publish("news", "forged")
    plain.publish("news", "unsigned")
    signed.publish("news", "good")
    got.wait(1)
    wait_for(lambda: listener.decode_errors == 2)
    assert got.bodies == ["good"]


def test_async_handler(relay: Relay, listen: StartListener) -> None:
    got = Collector()
    loops: list[asyncio.AbstractEventLoop] = []

    async def handler(message: Message) -> None:
        await asyncio.sleep(0)
        loops.append(asyncio.get_running_loop())
        got(message)

    listen(relay, sub("news", handler))
    relay.publish("news", "a")
    relay.publish("news", "b")

    got.wait(2)
    assert got.bodies == ["a", "b"]
    assert loops[0] is loops[1], "one event loop per subscriber thread"


# -- errors on the publishing side -------------------------------------------------


def _assert_only_marker_arrives(relay: Relay, got: Collector) -> None:
    """Publish a marker: if it is the first message, the failed publish sent nothing."""
    assert relay.publish("news", "marker") == 1
    got.wait(1)
    assert got.bodies == ["marker"]


def test_too_large_publishes_nothing(
    make_relay: Callable[..., Relay], listen: StartListener
) -> None:
    relay = make_relay(max_message_size=1024)
    got = Collector()
    listener = listen(relay, sub("news", got))

    with pytest.raises(MessageTooLarge, match="limit is 1024 bytes") as info:
        relay.publish("news", "x" * 2000)
    assert isinstance(info.value, ValueError)

    _assert_only_marker_arrives(relay, got)
    assert listener.gaps == 0, "a failed publish must not use up a sequence number"


def test_unencodable_body_publishes_nothing(
    relay: Relay, listen: StartListener
) -> None:
    got = Collector()
    listener = listen(relay, sub("news", got))

    with pytest.raises(EncodeError, match="object") as info:
        relay.publish("news", {"when": object()})
    assert isinstance(info.value, TypeError)

    _assert_only_marker_arrives(relay, got)
    assert listener.gaps == 0


def test_bad_headers_publish_nothing(relay: Relay, listen: StartListener) -> None:
    got = Collector()
    listen(relay, sub("news", got))

    with pytest.raises(ConfigurationError, match="headers="):
        relay.channel("news").publish("x", headers={"n": 1})  # type: ignore[dict-item]

    _assert_only_marker_arrives(relay, got)


@pytest.mark.parametrize("name", ["", "has space", "{tag}", "star*", "-dash", 7])
def test_invalid_channel_name(relay: Relay, name: Any) -> None:
    with pytest.raises(InvalidName):
        relay.channel(name)
    with pytest.raises(InvalidName):
        Channel(relay, name)


def test_invalid_subscriber_name(relay: Relay) -> None:
    with pytest.raises(InvalidName):
        Listener(relay, [sub("no spaces", print)])
    with pytest.raises(InvalidName):
        Listener(relay, [sub("{x}*", print, pattern=True)])


def test_listener_options_are_checked(relay: Relay) -> None:
    with pytest.raises(ConfigurationError, match="queue_size"):
        Listener(relay, [], queue_size=0)
    with pytest.raises(ConfigurationError, match="ping_timeout"):
        Listener(relay, [], ping_timeout=0)


# -- gaps ----------------------------------------------------------------------------


def test_sequence_gap_is_reported(
    make_relay: Callable[..., Relay],
    listen: StartListener,
    gap_log: pytest.LogCaptureFixture,
) -> None:
    reports: list[GapReport] = []
    relay = make_relay(on_gap=reports.append)
    got = Collector()
    listener = listen(relay, sub("news", got))
    channel = relay.channel("news")

    channel.publish(1)
    stream = channel._stream()
    stream.seqs[channel.key] += 3  # as if 3 messages had been published and lost
    channel.publish(2)
    channel.publish(3)

    got.wait(3)
    assert listener.gaps == 1
    assert listener.missed == 3
    assert reports == [
        GapReport(
            channel="news",
            publisher=stream.id,
            expected=2,
            received=5,
            missed=3,
            reason="sequence gap",
        )
    ]
    [line] = _warnings(gap_log)
    assert "channel 'news': sequence gap" in line
    assert "expected seq 2, received 5" in line and "3 messages lost" in line


def test_gap_from_another_publisher_and_a_failing_callback(
    make_relay: Callable[..., Relay],
    listen: StartListener,
    gap_log: pytest.LogCaptureFixture,
) -> None:
    def on_gap(report: GapReport) -> None:
        raise RuntimeError("callback bug")

    relay = make_relay(on_gap=on_gap)
    got = Collector()
    listener = listen(relay, sub("ticks", got))
    key = channel_key(relay.namespace, "ticks")

    def send(publisher: str, seq: int) -> None:
        envelope = {"i": f"id-{publisher}-{seq}", "b": seq, "p": publisher, "s": seq}
        entry = encode_entry(relay.codec.dumps(envelope), relay.codec.kind)
        relay.connection.call("PUBLISH", key, entry)

    send("other.1", 10)  # first sight of a publisher: no gap
    send("other.2", 1)
    send("other.1", 11)
    send("other.2", 4)  # skips 2 and 3
    send("other.1", 12)

    got.wait(5)
    assert got.bodies == [10, 1, 11, 4, 12]
    assert (listener.gaps, listener.missed) == (1, 2)
    errors = [r for r in gap_log.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "on_gap" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_no_false_gaps_with_concurrent_publishers(
    relay: Relay, listen: StartListener
) -> None:
    got = Collector()
    listener = listen(relay, sub("busy", got))
    channel = relay.channel("busy")
    threads, per_thread = 8, 100

    def publish_many() -> None:
        for n in range(per_thread):
            channel.publish(n)

    workers = [threading.Thread(target=publish_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)

    got.wait(threads * per_thread)
    assert listener.gaps == 0
    assert listener.dropped == 0


def test_publisher_ids_per_thread_and_after_fork(relay: Relay) -> None:
    channel = relay.channel("ids")
    main = channel._stream().id
    assert relay.channel("ids")._stream().id == main
    assert Channel(relay, "other")._stream().id == main  # one publisher per thread
    in_thread: list[str] = []
    thread = threading.Thread(target=lambda: in_thread.append(channel._stream().id))
    thread.start()
    thread.join(WAIT)
    relay_id, _, number = main.partition(".")
    assert in_thread[0].partition(".")[0] == relay_id
    assert in_thread[0] != main and number.isdigit()

    channel_module._after_fork_in_child()  # what os.fork() runs in the child

    forked = channel._stream().id
    assert forked.partition(".")[0] != relay_id
    assert forked.endswith(".1")
    assert channel._stream().seqs == {}


def test_decode_error_is_logged_and_skipped(
    relay: Relay, listen: StartListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="redrelay.channel")
    got = Collector()
    listener = listen(relay, sub("news", got))
    key = channel_key(relay.namespace, "news")

    relay.connection.call("PUBLISH", key, b"\x1frr1:0:0:j{not json")
    relay.connection.call("PUBLISH", key, b"\x1frr1:0:0:zwhat")
    relay.publish("news", "fine")

    got.wait(1)
    assert got.bodies == ["fine"]
    assert listener.decode_errors == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "redrelay.channel"]
    assert len(messages) == 2 and all("does not decode" in m for m in messages)


# -- handlers ------------------------------------------------------------------------


def test_handler_exception_does_not_stop_later_deliveries(
    relay: Relay, listen: StartListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="redrelay.channel")
    got = Collector()

    def handler(message: Message) -> None:
        got(message)
        if message.body == "boom":
            raise ValueError("handler bug")

    listener = listen(relay, sub("news", handler))
    for body in ["boom", "after", "boom", "last"]:
        relay.publish("news", body)

    got.wait(4)
    wait_for(lambda: listener.handled == 4)
    assert listener.handler_errors == 2
    failures = [r for r in caplog.records if r.name == "redrelay.channel"]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert "ValueError: handler bug" in caplog.text


def test_slow_handler_does_not_block_other_subscribers(
    relay: Relay, listen: StartListener
) -> None:
    release, started = threading.Event(), threading.Event()
    slow, fast = Collector(), Collector()

    def slow_handler(message: Message) -> None:
        started.set()
        assert release.wait(WAIT)
        slow(message)

    listen(relay, sub("news", slow_handler), sub("news", fast))
    try:
        for n in range(5):
            relay.publish("news", n)
        fast.wait(5)
        # The slow handler's thread may be scheduled after the fast one has all five.
        assert started.wait(WAIT) and slow.messages == []
    finally:
        release.set()
    slow.wait(5)
    assert slow.bodies == fast.bodies == [0, 1, 2, 3, 4]


def test_full_subscriber_queue_drops_and_reports(
    make_relay: Callable[..., Relay],
    listen: StartListener,
    gap_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run of drops is also reported every DROP_REPORT_INTERVAL (1 s) while it lasts
    # (the next test): on a loaded machine this one's run outlasted it, and its report
    # came early. Here only the end of the run may report it.
    monkeypatch.setattr("redrelay.gaps.DROP_REPORT_INTERVAL", 10 * WAIT)
    reports: list[GapReport] = []
    relay = make_relay(on_gap=reports.append)
    release, started = threading.Event(), threading.Event()
    slow = Collector()

    def slow_handler(message: Message) -> None:
        started.set()
        assert release.wait(WAIT)
        slow(message)

    listener = listen(relay, sub("news", slow_handler), queue_size=2)
    try:
        relay.publish("news", 0)
        assert started.wait(WAIT)  # message 0 is in the handler, the queue is empty
        for n in range(1, 10):
            relay.publish("news", n)
        wait_for(lambda: listener.dropped == 7)  # 1 and 2 are queued, 3..9 dropped
        assert listener.received == 10
        assert reports == []  # the run of drops is still going on
    finally:
        release.set()
    slow.wait(3)
    relay.publish("news", 10)  # accepted again: the run of drops is reported
    slow.wait(4)
    # The listener thread reports right after it queued message 10, which the
    # subscriber thread may have handled already: wait for the report itself.
    wait_for(lambda: listener.gaps == 1)

    assert slow.bodies == [0, 1, 2, 10]
    assert [r.missed for r in reports] == [7]
    assert reports[0].channel == "news"
    assert reports[0].reason.startswith("subscriber too slow")
    assert (listener.gaps, listener.missed, listener.dropped) == (1, 7, 7)
    assert any("subscriber too slow" in line for line in _warnings(gap_log))


def test_long_run_of_drops_is_reported_while_it_lasts(
    make_relay: Callable[..., Relay], listen: StartListener
) -> None:
    reports: list[GapReport] = []
    relay = make_relay(on_gap=reports.append)
    release, started = threading.Event(), threading.Event()

    def stuck(message: Message) -> None:
        started.set()
        assert release.wait(WAIT)

    listener = listen(relay, sub("news", stuck), queue_size=1)
    try:
        relay.publish("news", 0)
        assert started.wait(WAIT)
        relay.publish("news", 1)  # queued
        relay.publish("news", 2)  # dropped
        # No more messages: the idle listener reports the run after about a second.
        wait_for(lambda: len(reports) == 1, timeout=WAIT)
        assert reports[0].missed == 1
    finally:
        release.set()
    wait_for(lambda: listener.handled == 2)


# -- connection loss ---------------------------------------------------------------


def test_resubscribes_after_redis_restart(
    redis_server_factory: Callable[..., RedisServer],
    make_relay: Callable[..., Relay],
    listen: StartListener,
    gap_log: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory(appendonly=False)
    reports: list[GapReport] = []
    relay = make_relay(url=server.url, on_gap=reports.append)
    got = Collector()
    listener = listen(relay, sub("news", got), sub("ne*", got, pattern=True))
    relay.publish("news", "before")
    got.wait(2)

    server.kill()
    wait_for(lambda: not listener.connected.is_set())
    server.start()
    wait_for(lambda: listener.reconnects == 1 and listener.connected.is_set())

    assert relay.publish("news", "after") == 2
    got.wait(4)
    assert got.bodies == ["before", "before", "after", "after"]
    assert sorted((r.channel, r.pattern) for r in reports) == [
        ("ne*", "ne*"),
        ("news", None),
    ]
    for report in reports:
        assert report.reason.startswith("reconnected after ")
        assert report.reason.endswith("messages published meanwhile are lost")
        assert report.missed is None and report.publisher is None
    assert listener.gaps == 2
    assert sum("reconnected after" in line for line in _warnings(gap_log)) == 2


def test_network_cut_reports_the_reconnect_then_the_count(
    redis_server_factory: Callable[..., RedisServer],
    make_relay: Callable[..., Relay],
    listen: StartListener,
) -> None:
    server = redis_server_factory(appendonly=False)
    reports: list[GapReport] = []
    relay = make_relay(url=server.url, on_gap=reports.append)
    got = Collector()
    # A slow first retry (0.5-1 s with its jitter), so that the three messages below
    # are published while nobody listens, even if this thread is held up for a while.
    listener = listen(relay, sub("news", got), backoff_base=1.0, backoff_cap=1.0)
    relay.publish("news", 1)
    got.wait(1)

    assert relay.connection.call("CLIENT", "KILL", "TYPE", "pubsub") == 1
    lost = [relay.publish("news", n) for n in (2, 3, 4)]
    assert lost == [0, 0, 0]  # nobody subscribed: these three are gone
    wait_for(lambda: listener.reconnects == 1)
    relay.publish("news", 5)

    got.wait(2)
    assert got.bodies == [1, 5]
    reconnect, gap = reports
    assert reconnect.reason.startswith("reconnected after")
    assert (gap.expected, gap.received, gap.missed) == (2, 5, 3)
    assert listener.missed == 3


def test_half_open_connection_is_detected_by_ping(
    redis_server_factory: Callable[..., RedisServer],
    make_relay: Callable[..., Relay],
    listen: StartListener,
) -> None:
    server = redis_server_factory(appendonly=False)
    reports: list[GapReport] = []
    relay = make_relay(url=server.url, on_gap=reports.append)
    got = Collector()
    listener = listen(relay, sub("news", got))

    # A paused server reads nothing and answers nothing, like a dead peer whose
    # socket is still open: only the unanswered PING can tell. That takes at most
    # ping_interval + ping_timeout (0.7 s); the pause lasts 3 s, so that a listener
    # thread held up on a loaded machine still sees it, before the PONG comes.
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        wait_for(lambda: not listener.connected.is_set(), timeout=2.8)
    wait_for(lambda: listener.reconnects == 1 and listener.connected.is_set())

    assert relay.publish("news", "back") == 1
    got.wait(1)
    assert "no reply to PING" in reports[0].reason


# -- lifecycle -----------------------------------------------------------------------


def test_stop_unsubscribes_and_leaves_no_threads(relay: Relay) -> None:
    got = Collector()
    listener = Listener(relay, [sub("news", got), sub("n*", got, pattern=True)], **FAST)
    with listener:
        assert listener.connected.wait(WAIT)
        assert len(_redrelay_threads()) == 3
        assert relay.publish("news", 1) == 2
        got.wait(2)
    assert not listener.connected.is_set()
    assert _redrelay_threads() == []
    assert relay.publish("news", 2) == 0  # unsubscribed
    assert listener.stop() is True  # idempotent
    with pytest.raises(ConfigurationError, match="already started or stopped"):
        listener.start()


def test_stop_from_a_handler(relay: Relay) -> None:
    stopped = threading.Event()
    listener: Listener

    def handler(message: Message) -> None:
        listener.stop(timeout=WAIT)
        stopped.set()

    listener = Listener(relay, [sub("news", handler)], **FAST)
    listener.start()
    assert listener.connected.wait(WAIT)
    relay.publish("news", 1)
    assert stopped.wait(WAIT)
    wait_for(lambda: _redrelay_threads() == [])
    assert relay.publish("news", 2) == 0


def test_stop_finishes_received_messages(relay: Relay) -> None:
    release = threading.Event()
    got = Collector()

    def handler(message: Message) -> None:
        assert release.wait(WAIT)
        got(message)

    listener = Listener(relay, [sub("news", handler)], **FAST)
    listener.start()
    assert listener.connected.wait(WAIT)
    for n in range(3):
        relay.publish("news", n)
    wait_for(lambda: listener.received == 3)
    threading.Timer(0.05, release.set).start()

    assert listener.stop(timeout=WAIT) is True
    assert got.bodies == [0, 1, 2]
    wait_for(lambda: _redrelay_threads() == [])


def test_stop_gives_up_on_a_stuck_handler(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="redrelay.channel")
    release, started = threading.Event(), threading.Event()

    def handler(message: Message) -> None:
        started.set()
        assert release.wait(WAIT)

    listener = Listener(relay, [sub("news", handler)], **FAST)
    listener.start()
    assert listener.connected.wait(WAIT)
    relay.publish("news", 1)
    relay.publish("news", 2)
    assert started.wait(WAIT)

    assert listener.stop(timeout=0.2) is False
    assert "still busy" in caplog.text
    release.set()
    wait_for(lambda: _redrelay_threads() == [])
    assert listener.handled == 1  # the queued message was discarded


def test_listener_without_subscribers_starts_nothing(relay: Relay) -> None:
    listener = Listener(relay, [])
    listener.start()
    assert _redrelay_threads() == []
    assert listener.stop() is True
