"""Prometheus metrics: ``pip install redrelay[metrics]``.

What Redis knows (depths, ages, lifetime outcome counters, topic lag, live workers,
channel gaps) is read from Redis at scrape time by :class:`RelayCollector`, so every
process that serves ``/metrics`` reports the same cluster-wide numbers and a restart
loses nothing. Only what exists in one process alone (how long its handlers ran, how
long its messages waited) is a per-process histogram; with several worker processes set
``PROMETHEUS_MULTIPROC_DIR`` and those histograms go through prometheus_client's
multi-process files, which :func:`exposition` merges. A message id is never a label.

Usage::

    from redrelay import metrics
    metrics.instrument(relay)            # histograms + gap counters, in every process
    body, content_type = metrics.exposition(relay)   # what /metrics serves
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "redrelay.metrics needs prometheus_client: pip install 'redrelay[metrics]'"
    ) from exc

from . import monitor
from .message import Message
from .observers import Timings
from .protocol.keys import gaps_key

if TYPE_CHECKING:
    from .listener import GapReport
    from .relay import Relay

__all__ = [
    "QUEUE_STATES",
    "RelayCollector",
    "exposition",
    "instrument",
    "record_gap",
]

#: The ``state`` label values of ``redrelay_queue_messages``.
QUEUE_STATES = ("ready", "delayed", "in_flight", "dead")

#: The ``outcome`` label values of ``redrelay_messages_total`` always present (others,
#: such as ``dead_dropped``, appear once counted).
OUTCOMES = ("acked", "retried", "dead", "recovered", "rejected")

#: Histogram buckets in seconds, from a quick handler to a long one.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RelayCollector(Collector):
    """A collector that reads one relay's namespace from Redis at each scrape."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterable[Metric]:
        view = monitor.overview(self.relay)
        yield from _queue_metrics(view)
        yield from _topic_metrics(view)
        workers = GaugeMetricFamily(
            "redrelay_workers",
            "Worker processes (host and pid) holding a live lease on some queue.",
        )
        workers.add_metric([], view.workers)
        yield workers
        yield from _gap_metrics(self.relay)


def _queue_metrics(view: monitor.Overview) -> Iterator[Metric]:
    messages = GaugeMetricFamily(
        "redrelay_queue_messages",
        "Messages in each state of a queue.",
        labels=["queue", "state"],
    )
    consumers = GaugeMetricFamily(
        "redrelay_queue_consumers",
        "Consumers holding a lease on the queue.",
        labels=["queue"],
    )
    age = GaugeMetricFamily(
        "redrelay_queue_oldest_age_seconds",
        "Age of the oldest ready message (0 when none is ready).",
        labels=["queue"],
    )
    total = CounterMetricFamily(
        "redrelay_messages",
        "Outcomes of deliveries, counted by the queue's Lua transitions.",
        labels=["queue", "outcome"],
    )
    for s in view.queues:
        for state in QUEUE_STATES:
            messages.add_metric([s.name, state], getattr(s, state))
        consumers.add_metric([s.name], s.consumers)
        age.add_metric([s.name], s.oldest_age or 0.0)
        counters = {o: 0 for o in OUTCOMES} | s.counters
        for outcome, n in sorted(counters.items()):
            total.add_metric([s.name, outcome], n)
    yield from (messages, consumers, age, total)


def _topic_metrics(view: monitor.Overview) -> Iterator[Metric]:
    length = GaugeMetricFamily(
        "redrelay_topic_length", "Entries kept in the topic's stream.", labels=["topic"]
    )
    gauges = {
        name: GaugeMetricFamily(
            f"redrelay_topic_{name}", text, labels=["topic", "group"]
        )
        for name, text in (
            ("lag", "Entries the group has not read yet."),
            ("pending", "Entries delivered to the group and not acked yet."),
            ("retrying", "Pending entries waiting for a retry."),
            ("dead", "Dead letters of the group."),
            ("consumers", "Consumers holding a lease in the group."),
        )
    }
    total = CounterMetricFamily(
        "redrelay_topic_messages",
        "Outcomes of a topic group's deliveries.",
        labels=["topic", "group", "outcome"],
    )
    for t in view.topics:
        length.add_metric([t.name], t.length)
        for g in t.groups:
            for name, family in gauges.items():
                value = getattr(g, name)
                if value is not None:  # lag is unknown on some Redis versions
                    family.add_metric([t.name, g.group], value)
            for outcome, n in sorted(g.counters.items()):
                total.add_metric([t.name, g.group, outcome], n)
    yield length
    yield from gauges.values()
    yield total


def _gap_metrics(relay: Relay) -> Iterator[Metric]:
    gaps = CounterMetricFamily(
        "redrelay_channel_gaps",
        "Gap reports of channel subscribers (recorded by instrumented processes).",
        labels=["channel"],
    )
    lost = CounterMetricFamily(
        "redrelay_channel_lost_messages",
        "Channel messages known to be lost (sequence gaps and drops).",
        labels=["channel"],
    )
    flat = relay.connection.call("HGETALL", gaps_key(relay.namespace))
    pairs = (
        flat.items()
        if isinstance(flat, dict)
        else zip(flat[::2], flat[1::2], strict=True)
    )
    for field, value in sorted(pairs):
        kind, _, channel = field.decode().partition(":")
        family = gaps if kind == "gaps" else lost
        family.add_metric([channel], int(value))
    subscribers = GaugeMetricFamily(
        "redrelay_channel_subscribers",
        "Direct subscribers of each channel that has some (pattern subscriptions aside).",
        labels=["channel"],
    )
    counts, _ = monitor.channel_subscribers(relay)
    for channel, n in sorted(counts.items()):
        subscribers.add_metric([channel], n)
    yield gaps
    yield lost
    yield subscribers


def record_gap(relay: Relay, report: GapReport) -> None:
    """Count a channel gap report in Redis (``<namespace>:gaps``), for ``/metrics`` and
    the dashboard; the last 100 reports stay in a capped stream."""
    key = gaps_key(relay.namespace)
    commands: list[tuple[Any, ...]] = [("HINCRBY", key, f"gaps:{report.channel}", 1)]
    if report.missed:
        commands.append(("HINCRBY", key, f"lost:{report.channel}", report.missed))
    commands.append(
        ("XADD", f"{key}:log", "MAXLEN", "~", 100, "*", "report", str(report))
    )
    for command in commands:
        relay.connection.call(*command)


# -- per-process histograms ----------------------------------------------------------------

#: Built on first use, once per process: prometheus_client keeps one set of
#: multi-process files per metric name and process, so two copies would collide.
_histograms: dict[str, Histogram] = {}


def _histogram(name: str, text: str) -> Histogram:
    if name not in _histograms:
        _histograms[name] = Histogram(
            name, text, ["queue"], buckets=BUCKETS, registry=None
        )
    return _histograms[name]


def instrument(relay: Relay, *, histograms: bool = True) -> None:
    """Observe handler durations and queue waits in this process, and record channel gaps
    in Redis. Call it once per relay in every process that runs handlers (the worker
    imports your app module, so calling it there is enough).

    :param histograms: False skips the two histograms (in the worker's fast loops about
        0.2 us per message, counted a batch at a time; otherwise about 4 us per message on a
        small machine: it matters only for handlers that take microseconds themselves).
    """
    if histograms:
        _observe_handlers(relay)
    previous: Callable[[GapReport], None] | None = relay.on_gap

    def on_gap(report: GapReport) -> None:
        try:
            record_gap(relay, report)
        finally:
            if previous is not None:
                previous(report)

    relay.on_gap = on_gap


def _observe_handlers(relay: Relay) -> None:
    duration = _histogram(
        "redrelay_handler_duration_seconds",
        "How long queue and topic handlers ran (per process).",
    )
    waited = _histogram(
        "redrelay_queue_wait_seconds",
        "How long a message waited between its creation and its handler starting "
        "(a delayed message's delay included).",
    )

    children: dict[str, tuple[Any, Any]] = {}  # labels() takes a lock: once per name

    def pair_of(name: str) -> tuple[Any, Any]:
        pair = children.get(name)
        if pair is None:
            pair = children[name] = (waited.labels(name), duration.labels(name))
        return pair

    def observe(message: Message) -> _Observe:
        name = message.queue or message.topic or message.channel or "?"
        return _Observe(pair_of(name), message)

    observe.redrelay_batch = _Batches(pair_of)  # type: ignore[attr-defined]
    relay.add_handler_context(observe)


class _Observe:
    """Times one handler run (a slotted class: it runs once per message)."""

    __slots__ = ("message", "pair", "start")

    def __init__(self, pair: tuple[Any, Any], message: Message) -> None:
        self.pair, self.message = pair, message

    def __enter__(self) -> None:
        self.start = start = time.time()
        available = self.message.available_at or self.message.enqueued_at
        if available:
            self.pair[0].observe(max(0.0, start - available))

    def __exit__(self, *exc: object) -> None:
        self.pair[1].observe(max(0.0, time.time() - self.start))


class _Batches:
    """The histograms' batch form (see :mod:`redrelay.observers`): a worker's fast loop
    hands over a batch of handler runs, counted into buckets at once.

    prometheus_client observes one value at a time (a lock and a bucket search each,
    about 2 µs: more than a no-op handler costs). A batch adds its counts to the same
    bucket values that ``observe()`` increments, so both paths give the same histogram,
    in one process or through the multi-process files. Usually a whole batch falls in one
    bucket (quick handlers; a backlog's waits), found from its extremes alone.
    """

    def __init__(self, pair_of: Callable[[str], tuple[Any, Any]]) -> None:
        self.pair_of = pair_of

    def observe_batch(self, name: str, timings: Timings) -> None:
        waited, duration = self.pair_of(name)
        starts, ends, enqueued = timings.starts, timings.ends, timings.enqueued
        n = len(ends)
        if len(starts) != n:  # a run that did not end is not counted
            starts, enqueued = starts[:n], enqueued[:n]
        started = sum(starts)
        # One thread's runs follow each other: none is longer than first start to last end.
        _add(duration, ends[-1] - starts[0], 0.0, n, sum(ends) - started, ends, starts)
        # sorted() is several times quicker than min() + max() on a list of floats (and
        # next to free on the usual, nearly ordered creation times).
        ordered = sorted(enqueued)
        if (
            ordered[0] <= 0.0
        ):  # unknown creation times (0.0): no wait to observe for those
            kept = [(s, e) for s, e in zip(starts, enqueued, strict=True) if e > 0.0]
            if not kept:
                return
            starts, enqueued = [s for s, _ in kept], [e for _, e in kept]
            started, ordered = sum(starts), sorted(enqueued)
        low, high = starts[0] - ordered[-1], starts[-1] - ordered[0]
        total = started - sum(enqueued)
        _add(waited, high, low, len(starts), total, starts, enqueued)


def _add(
    child: Any,
    high: float,
    low: float,
    n: int,
    total: float,
    ends: list[float],
    starts: list[float],
) -> None:
    """Add the ``n`` observations ``ends[i] - starts[i]`` (between ``low`` and ``high``,
    summing to ``total``) to a histogram child: at once when they share a bucket."""
    bounds: Any = getattr(child, "_upper_bounds", None)
    if not _has_values(child, bounds):
        for e, s in zip(ends, starts, strict=True):
            child.observe(max(0.0, e - s))
        return
    first = bisect_left(bounds, high)
    if low >= 0.0 and bisect_left(bounds, low) == first:
        child._sum.inc(total)
        child._buckets[first].inc(n)
        return
    values = [max(0.0, e - s) for e, s in zip(ends, starts, strict=True)]
    child._sum.inc(sum(values))
    buckets = child._buckets
    for i, count in Counter(bisect_left(bounds, v) for v in values).items():
        buckets[i].inc(count)


def _has_values(child: Any, bounds: Any) -> bool:
    """Whether this prometheus_client's histogram child has the bucket values that
    ``observe()`` increments, as :func:`_add` uses them (it has had them for years; if a
    release renames them, values are observed one at a time: as correct, and slower)."""
    buckets = getattr(child, "_buckets", None)
    return (
        isinstance(bounds, list)
        and isinstance(buckets, list)
        and len(bounds) == len(buckets)
        and hasattr(getattr(child, "_sum", None), "inc")
    )


def exposition(relay: Relay) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type: Redis-wide metrics read now, plus the
    histograms (of every process when ``PROMETHEUS_MULTIPROC_DIR`` is set, else of this one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(relay))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for histogram in _histograms.values():
            registry.register(histogram)
    return generate_latest(registry), CONTENT_TYPE_LATEST
