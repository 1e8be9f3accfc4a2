"""relay.drain() as a test tool: failures raise, a virtual clock, subscribers (issue 16)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from redrelay import Backoff, DrainFailed, DrainTimeout, Message, Reject, Relay, Retry
from redrelay.testing import ChannelRecorder


def test_a_failure_raises_with_its_traceback_after_draining(relay: Relay) -> None:
    def handler(message: Message) -> None:
        if message.body == "bad":
            raise ValueError("no good")

    # On the virtual clock; no jitter: a jittered 600 s may come out under 5 s (rarely,
    # but the last assertion below would then fail).
    backoff = Backoff(base=600, jitter=False)
    relay.consumer("jobs", retries=2, backoff=backoff)(handler)
    q = relay.queue("jobs")
    q.put("ok")
    q.put("bad")
    with pytest.raises(DrainFailed) as info:
        relay.drain(timeout=5)
    text = str(info.value)
    assert "3 failure(s)" in text  # the first delivery and two retries
    assert "queue jobs" in text and "ValueError: no good" in text
    assert "Traceback" in text and "raise_on_failure=False" in text
    assert isinstance(info.value, AssertionError)
    stats = q.stats()
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)
    assert info.value.report.advanced > 5  # backoffs skipped, not waited (timeout=5)


def test_opting_out_returns_the_report(relay: Relay) -> None:
    def handler(message: Message) -> None:
        raise Reject("not for us")

    relay.consumer("jobs")(handler)
    relay.queue("jobs").put(1)
    report = relay.drain(raise_on_failure=False)
    assert [f.where for f in report.failures] == ["queue jobs"]
    assert report.failures[0].message is not None
    assert report.failures[0].message.body == 1


def test_dead_letters_without_a_handler_failure_count_too(relay: Relay) -> None:
    relay.consumer("jobs")(lambda m: None)
    key = relay.queue("jobs").keys.ready
    relay.connection.call("LPUSH", key, b"\x1frr1:0:0:jnot json")  # malformed envelope
    with pytest.raises(DrainFailed, match="dead queue jobs"):
        relay.drain()


def test_delays_and_retry_delays_run_in_due_order_without_waiting(relay: Relay) -> None:
    seen: list[Any] = []

    def handler(message: Message) -> None:
        if message.body == "again" and message.attempt == 1:
            raise Retry(delay=1800)  # flow control: not a failure
        seen.append(message.body)

    relay.consumer("jobs")(handler)
    q = relay.queue("jobs")
    q.put("in an hour", delay=3600)
    q.put("in a minute", delay=60)
    q.put("again")
    q.put("now")
    report = relay.drain(timeout=5)
    assert seen == ["now", "in a minute", "again", "in an hour"]
    assert report.failures == []
    assert report.advanced >= 3600 - 5


def test_a_rate_limit_holds_in_real_time_and_the_timeout_says_so(relay: Relay) -> None:
    """A new user's test put 100 messages on a "5/s" consumer: DrainTimeout, which
    now says why and what to do."""
    relay.consumer("hooks", rate_limit="5/s")(lambda m: None)
    relay.queue("hooks").put_many(range(100))
    with pytest.raises(
        DrainTimeout, match=r"rate-limited: hooks \(rate=5/1s\+1 .*raise timeout="
    ):
        relay.drain(timeout=0.5)


def test_without_the_virtual_clock_a_delay_times_out(relay: Relay) -> None:
    relay.consumer("jobs")(lambda m: None)
    relay.queue("jobs").put(1, delay=3600)
    with pytest.raises(DrainTimeout, match="not empty"):
        relay.drain(timeout=0.3, virtual_clock=False)


def test_channel_subscribers_run_on_what_handlers_publish(relay: Relay) -> None:
    heard: list[Any] = []

    def job(message: Message) -> None:
        relay.publish("news", {"done": message.body})

    relay.consumer("jobs")(job)
    relay.subscriber("news")(lambda m: heard.append(m.body))
    relay.subscriber("ne*", pattern=True)(lambda m: heard.append(("p", m.body)))
    relay.queue("jobs").put(1)
    report = relay.drain()
    assert heard == [{"done": 1}, ("p", {"done": 1})]
    assert [m.body for m in report.channels["news"]] == [{"done": 1}]


def test_a_recorder_started_before_the_code_publishes(relay: Relay) -> None:
    heard: list[Any] = []
    relay.subscriber("news")(lambda m: heard.append(m.body))
    with ChannelRecorder(relay) as recorded:
        relay.publish("news", 1)
        relay.publish("news", 2)
    assert [m.body for m in recorded.messages("news")] == [1, 2]
    relay.drain(channels=recorded)
    assert heard == [1, 2]


def test_capture_lists_what_subscribers_would_get_without_running_them(
    relay: Relay,
) -> None:
    heard: list[Any] = []
    relay.subscriber("news")(lambda m: heard.append(m.body))
    relay.subscriber("orders", group="audit")(lambda m: heard.append(m.body))

    def job(message: Message) -> None:
        relay.publish("news", "n")
        relay.topic("orders").publish("o")

    relay.consumer("jobs")(job)
    relay.queue("jobs").put(1)
    report = relay.drain(subscribers="capture")
    assert heard == []
    assert [m.body for m in report.channels["news"]] == ["n"]
    assert [m.body for m in report.topics["orders"]] == ["o"]


def test_topic_subscribers_read_from_the_start_and_failures_raise(
    relay: Relay,
) -> None:
    heard: list[Any] = []

    async def audit(message: Message) -> None:
        await asyncio.sleep(0)
        if message.body == "bad":
            raise RuntimeError("audit failed")
        heard.append(message.body)

    relay.subscriber("orders", group="audit", retries=1, backoff=600)(audit)
    relay.topic("orders").publish("before the drain")
    relay.topic("orders").publish("bad")
    with pytest.raises(DrainFailed, match="topic orders/audit") as info:
        relay.drain(timeout=5)
    assert heard == ["before the drain"]
    assert len(info.value.report.failures) == 2  # first try and its retry


def test_subscribers_off(relay: Relay) -> None:
    heard: list[Any] = []
    relay.subscriber("news")(lambda m: heard.append(m.body))
    relay.consumer("jobs")(lambda m: relay.publish("news", 1))
    relay.queue("jobs").put(1)
    report = relay.drain(subscribers="off")
    assert heard == [] and report.channels == {}


def test_given_queues_only_those_run_and_channels_are_captured(relay: Relay) -> None:
    heard: list[Any] = []
    relay.subscriber("news")(lambda m: heard.append(m.body))
    relay.consumer("jobs")(lambda m: relay.publish("news", m.body))
    relay.consumer("other")(lambda m: None)
    relay.queue("jobs").put(1)
    relay.queue("other").put(2)
    report = relay.drain(["jobs"])
    assert heard == [] and [m.body for m in report.channels["news"]] == [1]
    assert relay.queue("other").stats().ready == 1


def test_a_failing_channel_subscriber_fails_the_drain(relay: Relay) -> None:
    def on_news(message: Message) -> None:
        raise KeyError("missing")

    relay.subscriber("news")(on_news)
    relay.consumer("jobs")(lambda m: relay.publish("news", 1))
    relay.queue("jobs").put(1)
    with pytest.raises(DrainFailed, match="channel news") as info:
        relay.drain()
    [failure] = info.value.report.failures
    assert failure.message is not None and failure.message.body == 1


@pytest.mark.parametrize("where", ["channel", "queue", "async queue"])
def test_a_handler_that_calls_sys_exit_fails_the_drain(
    relay: Relay, where: str
) -> None:
    """As in a worker (issue 18): a failure, not a SystemExit out of drain() (which a
    new user's test got from a channel subscriber), noted at each attempt."""

    def exits(message: Message) -> None:
        sys.exit(3)

    async def aexits(message: Message) -> None:
        sys.exit(3)

    if where == "channel":
        relay.subscriber("news")(exits)
        relay.consumer("jobs")(lambda m: relay.publish("news", 1))
    else:
        handler = aexits if where == "async queue" else exits
        relay.consumer("jobs", retries=1, backoff=0.01)(handler)
    relay.queue("jobs").put(1)
    with pytest.raises(DrainFailed, match="SystemExit: 3") as info:
        relay.drain()
    attempts = 1 if where == "channel" else 2
    failures = info.value.report.failures
    assert [f.error for f in failures] == ["SystemExit: 3"] * attempts, failures
