"""``redrelay stats``: depths, consumers, age and counters of each queue."""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeAlias

import click
import orjson

from ..queue import QueueStats
from ..relay import Relay
from ..schedules import ScheduleInfo
from ..topic import TopicStats
from ._base import (
    cli,
    connection_options,
    format_age,
    open_relay,
    queue_names,
    require_queue,
    table,
)
from .schedules import render_schedules, schedule_dicts
from .topics import render_topics, topic_dicts, topic_names

#: Per-queue rates (acked/s, dead/s) and per-``topic/group`` rates (lag/s, acked/s).
Rates: TypeAlias = dict[str, dict[str, float]]
TopicRates: TypeAlias = dict[str, dict[str, float | None]]

__all__ = [
    "EMPTY",
    "Snapshot",
    "render",
    "render_snapshot",
    "snapshot",
    "stats",
    "to_json",
    "unconsumed_warnings",
    "watch",
]

#: Lifetime counters shown in the table (``--json`` shows every counter).
COUNTERS = ("acked", "retried", "dead", "recovered", "rejected")

#: What ``stats`` prints when the namespace has neither queues nor topics.
EMPTY = (
    "no queues in namespace {namespace!r} yet "
    "(a queue appears once something is put on it or a worker consumes it)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What one ``stats`` print shows: queue snapshots, topic snapshots, schedules."""

    queues: list[QueueStats]
    topics: list[TopicStats]
    schedules: list[ScheduleInfo] = dataclasses.field(default_factory=list)


def snapshot(relay: Relay, queues: Sequence[str] = ()) -> Snapshot:
    """The queues named (or all), and every topic when no queue is named (naming
    queues narrows the output to them, as in the table)."""
    topics = [] if queues else [relay.topic(t).stats() for t in topic_names(relay)]
    schedules = [] if queues else relay.schedules.info()
    return Snapshot(relay.stats(list(queues) or queue_names(relay)), topics, schedules)


def to_json(snap: Snapshot, *, topics: bool) -> str:
    """``stats --json``: the list of queue dicts, as it always was (scripts index it);
    with ``topics``, an object ``{"queues": [...], "topics": [...]}`` instead, the
    topics in the shape of ``redrelay topics --json`` (a list cannot gain topics
    without breaking the scripts that read every item as a queue); the object also
    has ``"schedules"``, in the shape of ``redrelay schedules --json``."""
    queues = [dataclasses.asdict(s) for s in snap.queues]
    payload: object = queues
    if topics:
        payload = {
            "queues": queues,
            "topics": topic_dicts(snap.topics),
            "schedules": schedule_dicts(snap.schedules),
        }
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()


def render_snapshot(
    snap: Snapshot, rates: Rates | None = None, topic_rates: TopicRates | None = None
) -> str | None:
    """The tables of ``stats`` (queues, topic groups, schedules), then a warning line per
    queue with messages and no consumer; None if all are empty."""
    parts = [render(snap.queues, rates)] if snap.queues else []
    if snap.topics:
        parts.append(render_topics(snap.topics, topic_rates))
    if snap.schedules:
        parts.append(render_schedules(snap.schedules))
    warnings = unconsumed_warnings(snap.queues)
    if warnings:
        parts.append("\n".join(f"warning: {w}" for w in warnings))
    return "\n\n".join(parts) or None


def unconsumed_warnings(snapshots: Sequence[QueueStats]) -> list[str]:
    """A line per queue whose messages wait and that no consumer holds a lease on: no
    worker runs for it, or its name is a typo (then the close name is suggested)."""
    names = [s.name for s in snapshots]
    lines = []
    for s in snapshots:
        # What a dead consumer held waits too: only a live worker's sweep returns it.
        waiting = s.ready + s.delayed + s.in_flight_expired
        if not waiting or s.consumers:
            continue
        others = [n for n in names if n != s.name]
        close = difflib.get_close_matches(s.name, others, n=1, cutoff=0.75)
        typo = (
            f"; a typo of {close[0]!r}? (`redrelay queue delete {s.name}`)"
            if close
            else ""
        )
        held = (
            f" ({s.in_flight_expired} held by an expired lease)"
            if s.in_flight_expired
            else ""
        )
        lines.append(
            f"queue {s.name!r} has {waiting} message(s) waiting{held} and no consumer "
            f"(is a worker running for it?){typo}"
        )
    return lines


@cli.command()
@click.argument("queues", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--topics",
    "with_topics",
    is_flag=True,
    help='With --json: print {"queues": [...], "topics": [...], "schedules": [...]} '
    "instead of the list of queues (kept as is for existing scripts).",
)
@click.option(
    "-w",
    "--watch",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Print again every SECONDS, with rates, until Ctrl-C.",
)
@connection_options()
@click.pass_context
def stats(
    ctx: click.Context,
    queues: tuple[str, ...],
    as_json: bool,
    with_topics: bool,
    watch: float | None,
) -> None:
    """Show the depths and counters of queues (all, or QUEUES), then topic groups
    (when no QUEUES are named; see `redrelay topics` for the columns).

    \b
    ready      waiting to be fetched
    delayed    waiting for their time (delay=, eta=, retry backoff)
    in flight  fetched by a consumer, not yet acked ("3 (2 expired)": 2 of
               them held by consumers whose lease ran out; they return to the
               queue at the next sweep of any worker on it)
    dead       dead letters (see `redrelay dead list`)
    consumers  live worker processes holding a lease on the queue ("1 +1
               expired": plus one that died or stopped making progress for
               longer than its lease)
    oldest     age of the oldest ready message
    A third table, for queues with priorities or flow limits: the limits the
    workers run with, ready messages of priority != 0, messages parked by their
    limit key (and which keys), and how often a limit held a fetch back.
    Counters since the queue was created: acked, retried, dead (dead-lettered),
    recovered (taken back from a consumer whose lease expired), rejected (stale
    acks from a consumer that lost its lease). With --watch, acked/s and dead/s
    are the rates since the previous print, and lag/s and acked/s per topic group.
    Then the periodic jobs (see `redrelay schedules`). --json prints a list of
    queues; --json --topics an object with "queues", "topics" and "schedules". --watch --json prints one object per line with "queues", "rates",
    "topics" and "topic_rates" (keyed "topic/group").
    """
    relay = open_relay(ctx)
    names = [require_queue(relay, q).name for q in queues]
    if watch is not None:
        _watch(relay, names, watch, as_json)
        return
    snap = snapshot(relay, names)
    if as_json:
        click.echo(to_json(snap, topics=with_topics))
    else:
        click.echo(render_snapshot(snap) or EMPTY.format(namespace=relay.namespace))


def _watch(relay: Relay, queues: list[str], interval: float, as_json: bool) -> None:
    # Queues and topics that appear while watching are picked up when none were named.
    frames = watch(lambda: snapshot(relay, queues), interval, as_json)
    try:
        for line in frames:
            click.echo(line)
    except KeyboardInterrupt:
        return


def watch(
    read: Callable[[], Snapshot | list[QueueStats]], interval: float, as_json: bool
) -> Iterator[str]:
    """Lines of ``stats --watch`` forever: a snapshot every ``interval`` seconds, with
    rates from the previous one (shared by the CLI and the Django command). ``read``
    may return a bare list of queue snapshots (no topics)."""
    previous = Snapshot([], [])
    last = time.monotonic()
    while True:
        got = read()
        snap = got if isinstance(got, Snapshot) else Snapshot(list(got), [])
        now = time.monotonic()
        rates = _queue_rates(previous.queues, snap.queues, now - last)
        topic_rates = _topic_rates(previous.topics, snap.topics, now - last)
        stamp = time.strftime("%H:%M:%S")
        if as_json:
            payload = {
                "time": stamp,
                "queues": [dataclasses.asdict(s) for s in snap.queues],
                "rates": rates,
                "topics": topic_dicts(snap.topics),
                "topic_rates": topic_rates,
            }
            yield orjson.dumps(payload).decode()
        else:
            yield f"-- {stamp}"
            yield render_snapshot(snap, rates, topic_rates) or "no queues yet"
            yield ""
        previous, last = snap, now
        time.sleep(interval)


def _queue_rates(
    before: list[QueueStats], after: list[QueueStats], seconds: float
) -> Rates:
    """acked/s and dead/s of each queue seen in both snapshots."""
    seconds = max(seconds, 1e-6)
    old = {s.name: s for s in before}
    return {
        s.name: {
            c: max(0, s.counters.get(c, 0) - old[s.name].counters.get(c, 0)) / seconds
            for c in ("acked", "dead")
        }
        for s in after
        if s.name in old
    }


def _topic_rates(
    before: list[TopicStats], after: list[TopicStats], seconds: float
) -> TopicRates:
    """lag/s (signed: negative when the group catches up; None when Redis cannot say
    the lag) and acked/s of each topic group seen in both snapshots."""
    seconds = max(seconds, 1e-6)
    old = {f"{t.name}/{g.group}": g for t in before for g in t.groups}
    rates: TopicRates = {}
    for t in after:
        for g in t.groups:
            was = old.get(key := f"{t.name}/{g.group}")
            if was is None:
                continue
            lag = None if g.lag is None or was.lag is None else g.lag - was.lag
            acked = g.counters.get("acked", 0) - was.counters.get("acked", 0)
            rates[key] = {
                "lag": None if lag is None else lag / seconds,
                "acked": max(0, acked) / seconds,
            }
    return rates


def _in_flight(s: QueueStats) -> str | int:
    if not s.in_flight_expired:
        return s.in_flight
    return f"{s.in_flight} ({s.in_flight_expired} expired)"


def _consumers(s: QueueStats) -> str | int:
    return f"{s.consumers} +{s.expired} expired" if s.expired else s.consumers


def render(snapshots: list[QueueStats], rates: Rates | None = None) -> str:
    """The two tables of ``redrelay stats``: depths (and rates), then lifetime counters."""
    headers = ["queue", "ready", "delayed", "in flight", "dead", "consumers", "oldest"]
    rows: list[list[object]] = [
        [
            s.name,
            s.ready,
            s.delayed,
            _in_flight(s),
            s.dead,
            _consumers(s),
            format_age(s.oldest_age),
        ]
        for s in snapshots
    ]
    if rates is not None:
        headers += ["acked/s", "dead/s"]
        for s, cells in zip(snapshots, rows, strict=True):
            r = rates.get(s.name)
            cells += [r["acked"], r["dead"]] if r else [None, None]
    depths = table(headers, rows)
    counters = table(
        ["counters", *COUNTERS],
        [[s.name, *(s.counters.get(c, 0) for c in COUNTERS)] for s in snapshots],
    )
    flow = _render_flow(snapshots)
    return f"{depths}\n\n{counters}" + (f"\n\n{flow}" if flow else "")


def _render_flow(snapshots: list[QueueStats]) -> str | None:
    """Priorities and flow limits, for the queues that use them (docs/flow-control.md)."""
    used = [s for s in snapshots if s.limits or s.prioritized or s.parked]
    if not used:
        return None
    rows: list[list[object]] = []
    for s in used:
        keys = ", ".join(s.parked_keys)
        if s.parked_key_count > len(s.parked_keys):
            keys += f" (+{s.parked_key_count - len(s.parked_keys)})"
        c = s.counters
        rows.append(
            [s.name, s.limits or "-", s.prioritized, s.parked, keys or "-",
             c.get("held_rate", 0), c.get("held_concurrency", 0), c.get("parked", 0)]
        )  # fmt: skip
    headers = ["flow", "limits", "prioritized", "parked", "parked keys"]
    return table([*headers, "held:rate", "held:concurrency", "parked total"], rows)
