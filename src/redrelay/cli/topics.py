"""Topics on the command line: ``redrelay topics``, the topic table of ``redrelay stats``,
and ``redrelay dead ... <topic>/<group>`` (a group's dead letters)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import click
import orjson

from ..queue import DeadLetter
from ..relay import Relay
from ..topic import Topic, TopicStats
from ._base import CliError, cli, connection_options, open_relay, table

__all__ = [
    "GroupDead",
    "render_topics",
    "require_group",
    "topic_dicts",
    "topic_names",
    "topics",
]

#: Counters shown in the topic table (``--json`` shows every counter).
COUNTERS = (
    "acked",
    "retried",
    "recovered",
    "rejected",
    "trimmed_unread",
    "trimmed_pending",
)


def topic_names(relay: Relay) -> list[str]:
    """Every topic the namespace has seen (publishers and workers register them)."""
    from ..protocol.keys import topics_key

    members = relay.connection.call("SMEMBERS", topics_key(relay.namespace))
    return sorted(m.decode() for m in members)


def topic_dicts(snapshots: list[TopicStats]) -> list[dict[str, Any]]:
    """Topics as JSON-ready dicts, the one shape of ``topics --json`` and ``stats``."""
    return [dataclasses.asdict(s) for s in snapshots]


def render_topics(
    snapshots: list[TopicStats], rates: dict[str, dict[str, float | None]] | None = None
) -> str:
    """One row per topic group: length, consumers, lag (unread), pending, retrying,
    dead, and its counters; a topic without groups gets one row with its length.
    With ``rates`` (keyed ``topic/group``, from ``stats --watch``): lag/s and acked/s."""
    headers = ["topic", "group", "length", "consumers", "lag", "pending", "retrying"]
    headers += ["dead", *COUNTERS]
    if rates is not None:
        headers += ["lag/s", "acked/s"]
    rows: list[list[object]] = []
    for t in snapshots:
        if not t.groups:
            rows.append([t.name, None, t.length, *([None] * (len(headers) - 3))])
        for g in t.groups:
            live: object = g.consumers
            if g.expired:
                live = f"{g.consumers} +{g.expired} expired"
            cells: list[object] = [t.name, g.group, t.length, live, g.lag]
            cells += [g.pending, g.retrying, g.dead]
            cells += [g.counters.get(c, 0) for c in COUNTERS]
            if rates is not None:
                r = rates.get(f"{t.name}/{g.group}")
                cells += [r["lag"], r["acked"]] if r else [None, None]
            rows.append(cells)
    return table(headers, rows)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@connection_options()
@click.pass_context
def topics(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Show topics (all, or NAMES) and each consumer group's state.

    \b
    length     entries the stream keeps now (bounded by its retention)
    lag        entries the group has not read yet
    pending    delivered to the group and not acked (running, or waiting to retry)
    retrying   of those, waiting for their retry (or taken back from a dead worker)
    trimmed_unread   entries retention removed before the group read them
    """
    relay = open_relay(ctx)
    known = topic_names(relay)
    for name in names:
        if name not in known:
            raise CliError(
                f"no topic {name!r} in namespace {relay.namespace!r} "
                f"(known: {', '.join(known) or 'none'})"
            )
    snapshots = [relay.topic(n).stats() for n in names or known]
    if as_json:
        payload = topic_dicts(snapshots)
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    elif snapshots:
        click.echo(render_topics(snapshots))
    else:
        click.echo(f"no topics in namespace {relay.namespace!r} yet")


@dataclasses.dataclass(frozen=True)
class _Count:
    dead: int


class GroupDead:
    """A topic group's dead letters with the queue's method names, for ``redrelay dead``."""

    def __init__(self, topic: Topic, group: str) -> None:
        self.topic, self.group = topic, group

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return self.topic.dead_letters(self.group, limit=limit, offset=offset)

    def stats(self) -> _Count:
        k = self.topic.keys.group(self.group)
        return _Count(int(self.topic.relay.connection.call("ZCARD", k.dead)))

    def iter_dead_ids(self, batch: int = 500) -> Iterator[list[str]]:
        return self.topic.iter_dead_ids(self.group, batch)

    def requeue_dead(self, ids: Any = None) -> int:
        return self.topic.requeue_dead(self.group, ids)

    def purge_dead(self, ids: Any = None) -> int:
        return self.topic.purge_dead(self.group, ids)


def require_group(relay: Relay, name: str) -> GroupDead:
    """``<topic>/<group>`` as a dead-letter source, or a one-line error."""
    topic, _, group = name.partition("/")
    if topic not in topic_names(relay):
        raise CliError(f"no topic {topic!r} in namespace {relay.namespace!r}")
    t = relay.topic(topic)
    if group not in t.groups():
        known = ", ".join(t.groups()) or "none"
        raise CliError(f"topic {topic!r} has no group {group!r} (groups: {known})")
    return GroupDead(t, group)
