"""Metrics and tracing in the worker's fast loops: observed a batch at a time, with the
same results as one message at a time (redrelay.observers)."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from redrelay import Message, Relay, metrics, tracing
from redrelay.observers import Timings

from .processes import wait_for
from .test_tracing import PARENT, pass_on


def _state(child: object) -> tuple[list[float], float]:
    """A histogram child's bucket counts (not cumulative) and sum, from its samples."""
    samples = child._samples()  # type: ignore[attr-defined]
    cumulative = [s.value for s in samples if s.name == "_bucket"]
    counts = [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
    (total,) = [s.value for s in samples if s.name == "_sum"]
    return counts, total


def _pair() -> tuple[object, object]:
    histograms = [
        Histogram(f"h{i}", "h", ["queue"], buckets=metrics.BUCKETS, registry=None)
        for i in range(2)
    ]
    return histograms[0].labels("q"), histograms[1].labels("q")


@pytest.mark.parametrize("spread", [0.001, 0.2, 40.0, 400.0])
def test_a_batch_counts_as_its_messages_one_at_a_time(spread: float) -> None:
    """Random batches (a few handlers that took long, creation times in and out of
    order, some unknown, clocks that disagree) give the same buckets and sums both ways."""
    rng = random.Random(int(spread * 1000))
    for _ in range(30):
        n = rng.randint(1, 400)
        timings, now = Timings(), 1_700_000_000.0
        for _ in range(n):
            timings.starts.append(now)
            now += rng.choice([0.0, 1e-6, 0.004, spread * rng.random()])
            timings.ends.append(now)
            enqueued = now - spread * rng.random() * rng.choice([1, 1, -0.01])
            timings.enqueued.append(rng.choice([enqueued] * 9 + [0.0]))
            now += rng.random() * 1e-4
        one = {name: _pair() for name in ("wait", "duration")}
        children = (one["wait"][0], one["duration"][0])
        batches = metrics._Batches(lambda name, children=children: children)
        batches.observe_batch("q", timings)
        for s, e, q in zip(timings.starts, timings.ends, timings.enqueued, strict=True):
            one["duration"][1].observe(max(0.0, e - s))  # type: ignore[attr-defined]
            if q:
                one["wait"][1].observe(max(0.0, s - q))  # type: ignore[attr-defined]
        for name, (batched, single) in one.items():
            (counts, total), (expected, expected_total) = (
                _state(batched),
                _state(single),
            )
            assert counts == expected, name
            assert total == pytest.approx(expected_total, rel=1e-9, abs=1e-6), name


@pytest.fixture
def observe_count(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times the per-message metrics context was entered."""
    entered = [0]
    enter = metrics._Observe.__enter__

    def counted(self: metrics._Observe) -> None:
        entered[0] += 1
        enter(self)

    monkeypatch.setattr(metrics._Observe, "__enter__", counted)
    yield entered


def _histogram(relay: Relay, name: str, queue: str) -> dict[str, float]:
    body, _ = metrics.exposition(relay)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name.startswith(name) and s.labels.get("queue") == queue:
                found[s.name.removeprefix(name) + s.labels.get("le", "")] = s.value
    return found


@pytest.mark.parametrize("kind", ["threads", "async", "results"])
def test_workers_observe_in_batches(
    make_relay: Callable[..., Relay], observe_count: list[int], kind: str
) -> None:
    """A worker's consumer threads (with or without results) and an ``async def``
    consumer's inline runs time each handler themselves, never entering the per-message
    context, and the histograms say what happened: every run counted, the 30 ms handlers above 25 ms, and every wait
    at least the 0.3 s the messages sat."""
    relay = make_relay()
    metrics.instrument(relay)
    queue = f"obs-{secrets.token_hex(4)}"
    if kind != "async":  # threads, or threads storing results (worker/fastpath.py)

        @relay.consumer(
            queue, concurrency=2, result_ttl=60 if kind == "results" else None
        )
        def handle(message: Message) -> None:
            time.sleep(message.body)

    else:

        @relay.consumer(queue)
        async def ahandle(message: Message) -> None:
            await asyncio.sleep(message.body)

    bodies = [0] * 300 + [0.03] * 10
    relay.queue(queue).put_many(bodies)
    time.sleep(0.3)  # the least that every message will have waited
    relay.start()
    try:
        wait_for(
            lambda: relay.queue(queue).stats().counters.get("acked") == len(bodies),
            timeout=30,
            what="every message acked",
        )
    finally:
        relay.close()
    relay = make_relay(namespace=relay.namespace)  # to scrape: the closed one cannot
    durations = _histogram(relay, "redrelay_handler_duration_seconds", queue)
    assert durations["_count"] == len(bodies)
    assert durations["_bucket0.025"] <= 300  # the 30 ms handlers are above it
    assert durations["_sum"] >= 10 * 0.03
    waits = _histogram(relay, "redrelay_queue_wait_seconds", queue)
    assert waits["_count"] == len(bodies)
    assert waits["_bucket0.25"] == 0
    assert waits["_sum"] >= len(bodies) * 0.3
    assert observe_count[0] == 0  # all in batches: the fast loop ran them


def test_topic_threads_observe_in_batches(
    make_relay: Callable[..., Relay], observe_count: list[int]
) -> None:
    relay = make_relay()
    metrics.instrument(relay)
    topic = f"obs-{secrets.token_hex(4)}"
    done: list[int] = []

    @relay.subscriber(topic, group="g", start="beginning")
    def handle(message: Message) -> None:
        done.append(message.body)

    relay.topic(topic).publish_many(list(range(200)))
    relay.start()
    try:
        wait_for(lambda: len(done) == 200, timeout=30, what="200 entries handled")
    finally:
        relay.close()
    relay = make_relay(namespace=relay.namespace)  # to scrape: the closed one cannot
    durations = _histogram(relay, "redrelay_handler_duration_seconds", topic)
    assert durations["_count"] == 200
    assert _histogram(relay, "redrelay_queue_wait_seconds", topic)["_count"] == 200
    assert observe_count[0] == 0


@pytest.mark.parametrize("metered", [False, True], ids=["tracing", "tracing+metrics"])
@pytest.mark.parametrize("kind", ["threads", "async"])
def test_workers_without_sdk_pass_the_trace_on(
    make_relay: Callable[..., Relay], metered: bool, kind: str
) -> None:
    """With the global tracer provider (no SDK in this process), the fast loops enter
    the consumer span only for messages with headers: a message a handler puts carries
    the trace of the message it handles, and one without a trace starts none."""
    relay = make_relay()
    tracing.instrument(relay)
    if metered:
        metrics.instrument(relay)
    seen = pass_on(relay, asynchronous=kind == "async")
    relay.queue("first").put("plain")
    relay.queue("first").put("traced", headers={"traceparent": PARENT})
    relay.queue("first").put_many([f"more {i}" for i in range(50)])
    relay.start()
    try:
        wait_for(lambda: len(seen) == 52, timeout=30, what="52 messages passed on")
    finally:
        relay.close()
    assert seen["traced"]["traceparent"].split("-")[1] == PARENT.split("-")[1]
    assert "traceparent" not in seen["plain"]
    assert not any("traceparent" in seen[f"more {i}"] for i in range(50))
