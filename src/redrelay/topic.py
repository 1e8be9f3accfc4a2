"""Durable topics: a Redis Stream that every consumer group reads in full.

A topic keeps its entries for a while (its retention), so a group that was down reads
what it missed when it comes back, and a new group may start from the beginning, a
stream id or a time (replay). Within a group, consumers share the entries; each group
gets every entry, at least once. The worker side lives in :mod:`redrelay.worker.topics`.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import dead_store
from ._types import Duration, Handler
from .config import ConsumerOptions
from .errors import ConfigurationError, InvalidName
from .protocol.envelope import new_id
from .protocol.keys import GroupKeys, TopicKeys, topics_key, validate_name
from .protocol.requests import Plan, Step
from .protocol.transitions import check_headers, to_ms, to_seconds
from .records import DeadLetter, decode_dead_letter

if TYPE_CHECKING:
    from .relay import Relay

__all__ = [
    "DEFAULT_MAXLEN",
    "PARKED",
    "GroupStats",
    "Topic",
    "TopicStats",
    "TopicSubscription",
    "pairs",
    "parse_start",
    "text",
    "validate_group",
]

#: Entries a topic keeps by default (``XADD ... MAXLEN ~``): about this many, never fewer.
DEFAULT_MAXLEN = 100_000
#: The consumer that holds a group's entries between deliveries (retry backoff, or taken
#: back from a dead consumer); it never reads, fetches claim from it.
PARKED = "redrelay.parked"
#: Entries per round trip in ``publish_many``.
PUBLISH_CHUNK = 1000

_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?\Z")


def validate_group(group: object) -> str:
    """A group name: a queue-style name without ``:`` (it is one segment of its keys)."""
    name = validate_name("group", group)
    if ":" in name or name == PARKED:
        raise InvalidName("group", name, "must not contain ':' or be the reserved name")
    return name


def parse_start(start: object) -> str:
    """The XGROUP CREATE position of ``start=``: ``"now"`` -> ``$``, ``"beginning"`` ->
    ``0``, a stream id as it is, a datetime -> the first id at or after it."""
    if start == "now":
        return "$"
    if start == "beginning":
        return "0"
    if isinstance(start, datetime):
        ms = int(start.timestamp() * 1000)
        # XGROUP CREATE takes the last id already read: everything from ms on is new.
        return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0"
    if isinstance(start, str) and _STREAM_ID.match(start):
        return start
    raise ConfigurationError(
        f'start= must be "now", "beginning", a stream id like "1700000000000-0" or a '
        f"datetime, got {start!r}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSubscription:
    """A handler bound to one consumer group of a topic (``@relay.subscriber(..., group=)``)."""

    topic: Topic
    group: str
    handler: Handler
    options: ConsumerOptions
    #: Where the group starts if it does not exist yet (an XGROUP CREATE position).
    start: str

    @property
    def name(self) -> str:
        return f"{self.topic.name}/{self.group}"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    @property
    def keys(self) -> GroupKeys:
        return self.topic.keys.group(self.group)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStats:
    """A snapshot of one consumer group of a topic."""

    group: str
    #: Worker threads holding a live lease in the group.
    consumers: int
    #: Entries delivered and not yet acked (in flight, or waiting for a retry).
    pending: int
    #: Of those, entries waiting for their retry (or taken back from a dead consumer).
    retrying: int
    #: Entries in the stream the group has not read yet (None: Redis cannot say).
    lag: int | None
    dead: int
    #: Lifetime counters: acked, retried, dead, recovered, rejected, trimmed_unread,
    #: trimmed_pending ...
    counters: dict[str, int]
    #: Consumers whose lease ran out (dead, or stuck for longer than their lease) and
    #: that no sweep has taken back yet; ``consumers`` counts the live ones.
    expired: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicStats:
    """A snapshot of one topic and its groups."""

    name: str
    length: int
    first_id: str | None
    last_id: str | None
    groups: list[GroupStats]


class Topic:
    """A named durable topic. Get one with ``relay.topic(name)``; it holds no connection.

    :param maxlen: entries kept (approximately, never fewer); None or 0 keeps all
        (the stream grows without bound: only for topics with their own trimming).
    :param max_age: keep the entries younger than this instead (seconds or timedelta,
        by the server's clock); when it is set, ``maxlen`` is not applied (a stream has
        one trimming rule per ``XADD``).
    """

    def __init__(
        self,
        relay: Relay,
        name: str,
        *,
        maxlen: int | None = DEFAULT_MAXLEN,
        max_age: Duration | None = None,
    ) -> None:
        self.relay = relay
        self.name = validate_name("topic", name)
        if maxlen is not None and (
            not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 0
        ):
            raise ConfigurationError(
                f"maxlen= must be an int >= 0 (0 or None: keep every entry), got {maxlen!r}"
            )
        self.maxlen = maxlen or None
        self.max_age = (
            None
            if max_age is None
            else to_seconds(max_age, "max_age", allow_zero=False)
        )
        self.keys = TopicKeys.of(relay.namespace, name)
        self._registered = False

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} namespace={self.relay.namespace!r}>"

    def retention(self) -> list[str | int]:
        """ARGV of the retention bound for the publish scripts: ``max_age`` if set, else
        ``maxlen``, else none."""
        if self.max_age is not None:
            return ["MINID", to_ms(self.max_age)]
        if self.maxlen is not None:
            return ["MAXLEN", self.maxlen]
        return ["", 0]

    # -- publishing ------------------------------------------------------------------------

    def encode(self, body: Any, headers: Mapping[str, str] | None = None) -> bytes:
        """Encode one message (the queue envelope: same codec, signing and size limit)."""
        envelope: dict[str, Any] = {
            "i": new_id(),
            "b": body,
            "t": time.time_ns() // 1_000_000,
        }
        if headers:
            envelope["h"] = check_headers(headers)
        return self.relay.encode_envelope(envelope, ("topic", self.name))

    def publish(self, body: Any, *, headers: Mapping[str, str] | None = None) -> str:
        """Append one message to the topic and return its stream id. One round trip.

        The stream is trimmed to the topic's retention in the same step.

        :raises MessageTooLarge: the encoded message is over ``max_message_size``.
        :raises BrokerUnavailable: Redis did not answer after bounded retries.
        """
        return self.relay.connection.drive(self._publish_plan([body], headers))[0]

    async def apublish(
        self, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """:meth:`publish` as a coroutine (same arguments, errors and result)."""
        plan = self._publish_plan([body], headers)
        return (await self.relay.aconnection.drive(plan))[0]

    def publish_many(
        self, bodies: Iterable[Any], *, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """Append many messages in one round trip per 1000; returns their stream ids.

        Every body is encoded and checked first, so a bad body fails the whole call
        with nothing written. Each chunk of 1000 is appended atomically (one script).
        """
        return self.relay.connection.drive(self._publish_plan(iter(bodies), headers))

    async def apublish_many(
        self, bodies: Iterable[Any], *, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """:meth:`publish_many` as a coroutine (same arguments, errors and result)."""
        plan = self._publish_plan(iter(bodies), headers)
        return await self.relay.aconnection.drive(plan)

    def _publish_plan(
        self, bodies: Iterable[Any], headers: Mapping[str, str] | None
    ) -> Plan[list[str]]:
        """The one copy of publishing, for the sync and async layers (see protocol/requests)."""
        entries: list[bytes] = []
        for index, body in enumerate(bodies):
            try:
                entries.append(self.encode(body, headers))
            except Exception as exc:
                note = getattr(exc, "add_note", None)  # Python >= 3.11
                if note is not None and not isinstance(bodies, list):
                    note(f"in publish_many, body at index {index}; nothing was written")
                raise
        if not entries:
            return []
        if not self._registered:
            # Its own command: on a Cluster that set is in another slot than the topic.
            yield Step((("SADD", topics_key(self.relay.namespace), self.name),))
            self._registered = True
        ids: list[str] = []
        for start in range(0, len(entries), PUBLISH_CHUNK):
            chunk = entries[start : start + PUBLISH_CHUNK]
            reply = yield Step(
                script="topic_publish",
                keys=[self.keys.stream],
                args=[*self.retention(), *chunk],
            )
            ids += [i.decode() for i in reply]
        return ids

    def register(self) -> None:
        """Add the topic to ``<ns>:topics`` (for ``stats``): its own command, since on a
        Cluster that set is in another slot than the topic's keys."""
        if not self._registered:
            self.relay.connection.call(
                "SADD", topics_key(self.relay.namespace), self.name
            )
            self._registered = True

    # -- inspecting ------------------------------------------------------------------------

    def groups(self) -> list[str]:
        """Names of the topic's consumer groups (those created by workers so far)."""
        return [g.group for g in self.stats().groups]

    def stats(self) -> TopicStats:
        """The stream's length and ends, and each group's lag, pending entries and counters."""
        conn = self.relay.connection
        stream: dict[str, Any] = {}
        infos: list[dict[str, Any]] = []
        if conn.call("EXISTS", self.keys.stream):
            stream = pairs(conn.call("XINFO", "STREAM", self.keys.stream))
            infos = [pairs(g) for g in conn.call("XINFO", "GROUPS", self.keys.stream)]
        first, last = stream.get("first-entry"), stream.get("last-entry")
        snapshot = TopicStats(
            name=self.name,
            length=int(stream.get("length", 0)),
            first_id=text(first[0]) if first else None,
            last_id=text(last[0]) if last else None,
            groups=[],
        )
        added = stream.get("entries-added")
        groups = [self._group_stats(i, snapshot, added) for i in infos]
        snapshot.groups.extend(sorted(groups, key=lambda g: g.group))
        return snapshot

    def _group_stats(
        self, info: dict[str, Any], topic: TopicStats, added: Any
    ) -> GroupStats:
        name = text(info["name"])
        k = self.keys.group(name)
        conn = self.relay.connection
        now = conn.time_ms(k.leases)  # the clock that stamps the leases
        consumers, expired, retrying, dead, counters, cursor = conn.pipeline(
            [
                ("ZCOUNT", k.leases, f"({now}", "+inf"),
                ("ZCOUNT", k.leases, "-inf", now),
                ("ZCARD", k.retry),
                ("ZCARD", k.dead),
                ("HGETALL", k.stats),
                ("HMGET", k.cursor, "id", "read"),
            ],
            transaction=False,
        )
        return GroupStats(
            group=name,
            consumers=int(consumers),
            expired=int(expired),
            pending=int(info.get("pending", 0)),
            retrying=int(retrying),
            lag=_lag(info, topic, added, cursor),
            dead=int(dead),
            counters={text(key): int(v) for key, v in counters.items()},
        )

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(
        self, group: str, *, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        """A group's dead letters, newest first (``DeadLetter.queue`` is the topic)."""
        k = self.keys.group(validate_group(group))
        ids = self.relay.connection.call(
            "ZREVRANGE", k.dead, offset, offset + limit - 1
        )
        if not ids:
            return []
        records = self.relay.connection.call("HMGET", k.dead_data, *ids)
        return [decode_dead_letter(r) for r in records if r is not None]

    def iter_dead_ids(self, group: str, batch: int = 500) -> Iterator[list[str]]:
        """A group's dead-letter ids in batches, oldest first (for bulk requeue and purge)."""
        k = self.keys.group(validate_group(group))
        yield from dead_store.iter_ids(self.relay.connection, k.dead, batch)

    def requeue_dead(self, group: str, ids: Iterable[str] | None = None) -> int:
        """Give dead letters (all, or these message ids) back to ``group`` only.

        Each is appended to the stream again, marked for that group (the other groups
        skip it), with its failure count reset. Each id moves once, even if two
        operators requeue at the same time. Returns how many moved.
        """
        k = self.keys.group(validate_group(group))
        conn = self.relay.connection
        keys = [self.keys.stream, k.dead, k.dead_data]
        head = [group, *self.retention()]
        return dead_store.requeue(
            conn,
            k.dead,
            k.dead_data,
            ids,
            lambda args: conn.run("topic_requeue_dead", keys, [*head, *args]),
        )

    def purge_dead(self, group: str, ids: Iterable[str] | None = None) -> int:
        """Delete a group's dead letters (all, or these ids). Returns how many."""
        k = self.keys.group(validate_group(group))
        return dead_store.purge(self.relay.connection, k.dead, k.dead_data, ids)


def _lag(
    info: dict[str, Any], topic: TopicStats, added: Any, cursor: list[Any]
) -> int | None:
    """Entries the group has not read: Redis's own ``lag`` (7.0+) when it knows, else
    from the group's cursor (entries the stream had up to the last id read), else from
    where the last read id sits in the stream (caught up, or behind everything)."""
    if info.get("lag") is not None:
        return int(info["lag"])
    delivered = text(info.get("last-delivered-id", "0-0"))
    cursor_id, read = cursor
    if added is not None and read is not None and cursor_id is not None:
        if text(cursor_id) == delivered:
            return max(0, int(added) - int(read))
    if topic.last_id is None or _id(delivered) >= _id(topic.last_id):
        return 0
    if topic.first_id is not None and _id(delivered) < _id(topic.first_id):
        return topic.length
    return None


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(reply: Any) -> dict[str, Any]:
    """XINFO's reply (a flat list in RESP2, a dict in RESP3) as a str-keyed dict."""
    if isinstance(reply, dict):
        return {text(k): v for k, v in reply.items()}
    return {text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
