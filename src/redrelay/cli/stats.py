"""``redrelay stats``: depths, consumers, age and counters of each queue."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import click
import orjson

from ..queue import QueueStats
from ..relay import Relay
from ._base import (
    cli,
    connection_options,
    format_age,
    open_relay,
    queue_names,
    require_queue,
    table,
)

__all__ = ["render", "stats", "watch"]

#: Lifetime counters shown in the table (``--json`` shows every counter).
COUNTERS = ("acked", "retried", "dead", "recovered", "rejected")


@cli.command()
@click.argument("queues", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
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
    ctx: click.Context, queues: tuple[str, ...], as_json: bool, watch: float | None
) -> None:
    """Show the depths and counters of queues (all, or QUEUES).

    \b
    ready      waiting to be fetched
    delayed    waiting for their time (delay=, eta=, retry backoff)
    in flight  fetched by a consumer, not yet acked
    dead       dead letters (see `redrelay dead list`)
    consumers  worker processes holding a lease on the queue
    oldest     age of the oldest ready message
    Counters since the queue was created: acked, retried, dead (dead-lettered),
    recovered (taken back from a consumer whose lease expired), rejected (stale
    acks from a consumer that lost its lease). With --watch, acked/s and dead/s
    are the rates since the previous print.
    """
    relay = open_relay(ctx)
    names = [require_queue(relay, q).name for q in queues] or queue_names(relay)
    if watch is not None:
        _watch(relay, list(queues), watch, as_json)
        return
    snapshots = relay.stats(names)
    if as_json:
        payload = [dataclasses.asdict(s) for s in snapshots]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    from .topics import render_topics, topic_names

    topics = [] if queues else [relay.topic(t).stats() for t in topic_names(relay)]
    if not snapshots and not topics:
        click.echo(
            f"no queues in namespace {relay.namespace!r} yet "
            "(a queue appears once something is put on it or a worker consumes it)"
        )
        return
    click.echo(
        "\n\n".join(
            [
                *([render(snapshots)] if snapshots else []),
                *([render_topics(topics)] if topics else []),
            ]
        )
    )


def _watch(relay: Relay, queues: list[str], interval: float, as_json: bool) -> None:
    # Queues that appear while watching are picked up when none were named.
    frames = watch(lambda: relay.stats(queues or queue_names(relay)), interval, as_json)
    try:
        for line in frames:
            click.echo(line)
    except KeyboardInterrupt:
        return


def watch(
    read: Callable[[], list[QueueStats]], interval: float, as_json: bool
) -> Iterator[str]:
    """Lines of ``stats --watch`` forever: a snapshot every ``interval`` seconds, with
    rates from the previous one (shared by the CLI and the Django command)."""
    previous: dict[str, QueueStats] = {}
    last = time.monotonic()
    while True:
        snapshots = read()
        now = time.monotonic()
        rates = {
            s.name: _rates(previous[s.name], s, now - last)
            for s in snapshots
            if s.name in previous
        }
        stamp = time.strftime("%H:%M:%S")
        if as_json:
            payload = {
                "time": stamp,
                "queues": [dataclasses.asdict(s) for s in snapshots],
                "rates": rates,
            }
            yield orjson.dumps(payload).decode()
        else:
            yield f"-- {stamp}"
            yield render(snapshots, rates) if snapshots else "no queues yet"
            yield ""
        previous, last = {s.name: s for s in snapshots}, now
        time.sleep(interval)


def _rates(before: QueueStats, after: QueueStats, seconds: float) -> dict[str, float]:
    seconds = max(seconds, 1e-6)
    return {
        name: max(0, after.counters.get(name, 0) - before.counters.get(name, 0))
        / seconds
        for name in ("acked", "dead")
    }


def render(
    snapshots: list[QueueStats], rates: dict[str, dict[str, float]] | None = None
) -> str:
    """The two tables of ``redrelay stats``: depths (and rates), then lifetime counters."""
    headers = ["queue", "ready", "delayed", "in flight", "dead", "consumers", "oldest"]
    rows: list[list[object]] = [
        [
            s.name,
            s.ready,
            s.delayed,
            s.in_flight,
            s.dead,
            s.consumers,
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
    return f"{depths}\n\n{counters}"
