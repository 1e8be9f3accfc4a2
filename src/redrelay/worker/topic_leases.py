"""Topic group leases: one consumer of a group per worker thread, and its transitions.

A consumer is named by a fresh id and holds a lease in the group's ``leases`` sorted set
(expiry in server time), renewed by heartbeats. Its entries' owner in the stream's
pending list is the lease token: once a sweep has taken them back (``topic_recover.lua``)
a late ack, retry or dead-lettering from the old consumer finds them owned by someone
else and is rejected. Each transition is one Lua script in ``protocol/scripts/topic_*``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import RedrelayError
from ..protocol.transitions import to_ms
from ..topic import PARKED, TopicSubscription, pairs, text

if TYPE_CHECKING:
    from ..io._pending import Pending, Ready
    from ..io.sync import Connection

__all__ = [
    "Ahead",
    "Fetched",
    "GroupLease",
    "create_group",
    "group_idle",
    "receive_ahead",
    "recover_expired",
    "recover_group",
    "send_ahead",
]

log = logging.getLogger("redrelay.worker")


@dataclass(slots=True)
class Fetched:
    """One fetch's reply: entries as (stream id, entry, deliveries, failures)."""

    held: int
    status: int
    trimmed_pending: int
    trimmed_unread: int
    wait: float
    items: list[tuple[str, bytes, int, int]]


@dataclass(slots=True)
class Ahead:
    """A fetch sent ahead: its reply on the wire, the consumer it was sent as, and the
    acks it carries (sent again after a lost reply)."""

    reply: Pending | Ready
    consumer_id: str
    acks: list[str]


class GroupLease:
    """One thread's consumer in a topic's group."""

    def __init__(self, conn: Connection, sub: TopicSubscription) -> None:
        self.conn = conn
        self.sub = sub
        self.stream = sub.topic.keys.stream
        self.keys = sub.keys
        self.lease_ms = to_ms(sub.options.lease)
        self.consumer_id = ""
        #: Set when its thread died or got stuck: never renewed again (liveness.py).
        self.abandoned = False

    def join(self) -> None:
        """Register under a fresh consumer id (first start, or after the lease was lost)."""
        self.consumer_id = uuid.uuid4().hex[:16]
        info = orjson.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        )
        self.conn.run(
            "heartbeat",
            [self.keys.leases, self.keys.consumers],
            [self.consumer_id, self.lease_ms, info],
        )

    def heartbeat(self) -> bool:
        """Extend the lease; if it was taken over, log it, join again and return False."""
        cid = self.consumer_id
        if self.conn.run(
            "heartbeat",
            [self.keys.leases, self.keys.consumers],
            [cid, self.lease_ms, b""],
        ):
            return True
        if cid == self.consumer_id:
            log.warning(
                "topic %s: the lease of consumer %s expired and was taken over; what it held "
                "went back to the group; joining again",
                self.sub.name,
                cid,
            )
            self.join()
        return False

    def fetch(self, count: int, acks: list[str], resync: bool) -> Fetched:
        """Ack ``acks``, then take up to ``count`` entries, in one round trip."""
        return _parse(
            self.conn.run("topic_fetch", *self._fetch_call(count, acks, resync))
        )

    def send_fetch(self, count: int, acks: list[str]) -> Ahead:
        """:meth:`fetch` sent without waiting for its reply (:meth:`receive` reads it):
        Redis takes the next batch while this thread runs the one in hand."""
        keys, args = self._fetch_call(count, acks, False)
        reply = self.conn.send_script("topic_fetch", keys, args)
        return Ahead(reply, self.consumer_id, acks[:])

    def receive(self, ahead: Ahead) -> Fetched:
        """The reply of a fetch sent ahead. If this raises, the reply is lost (whether
        the script ran is unknown): fetch with ``resync`` and ``ahead.acks`` again."""
        return _parse(ahead.reply.result())

    def _fetch_call(
        self, count: int, acks: list[str], resync: bool
    ) -> tuple[list[str], list[str | int]]:
        k = self.keys
        keys = [
            self.stream, k.leases, k.retry, k.failures, k.stats, k.cursor, k.started,
            k.history,
        ]  # fmt: skip
        return keys, [k.group, self.consumer_id, count, "1" if resync else "0", *acks]

    def ack(self, ids: list[str]) -> int:
        k = self.keys
        return int(
            self.conn.run(
                "topic_ack",
                [self.stream, k.failures, k.stats, k.started, k.history],
                [k.group, self.consumer_id, *ids],
            )
        )

    def retry(self, sid: str, delay: float, failures: int) -> int:
        k = self.keys
        return int(
            self.conn.run(
                "topic_retry",
                [self.stream, k.retry, k.failures, k.stats, k.started, k.history],
                [k.group, self.consumer_id, sid, to_ms(delay), failures, PARKED],
            )
        )

    def bury(self, sid: str, msg_id: str, record: bytes, cap: int) -> bool:
        k = self.keys
        return bool(
            self.conn.run(
                "topic_bury",
                [
                    self.stream,
                    k.dead,
                    k.dead_data,
                    k.failures,
                    k.stats,
                    k.started,
                    k.history,
                ],
                [k.group, self.consumer_id, sid, msg_id, record, cap],
            )
        )

    def mark(self, sid: str) -> bool:
        """Record that a redelivered entry starts now; False if it is no longer held."""
        return bool(
            self.conn.run(
                "topic_mark",
                [self.stream, self.keys.started],
                [self.keys.group, self.consumer_id, sid],
            )
        )

    def leave(self) -> int:
        """Drop the lease, handing anything still held back to the group (due at once)."""
        return recover_group(self.conn, self.sub, self.consumer_id, leave=True)


def _parse(r: list[Any]) -> Fetched:
    # (Script replies: deliveries and failures are integers already.)
    items = list(
        zip(map(bytes.decode, r[5::4]), r[6::4], r[7::4], r[8::4], strict=True)
    )
    wait = -1.0 if r[4] < 0 else r[4] / 1000
    return Fetched(int(r[0]), int(r[1]), int(r[2]), int(r[3]), wait, items)


def send_ahead(
    lease: GroupLease, count: int, acks: list[str]
) -> tuple[Ahead | None, bool]:
    """Send the next fetch, carrying ``acks`` (emptied), before the batch in hand runs:
    ``(the call, False)``; ``(None, True)`` if it could not be sent (``acks`` kept: the
    next fetch sends them, and resyncs in case the call reached Redis after all)."""
    try:
        ahead = lease.send_fetch(count, acks)
    except RedrelayError:
        return None, True
    acks.clear()
    return ahead, False


def receive_ahead(lease: GroupLease, call: Ahead, acks: list[str]) -> Fetched:
    """The batch a fetch sent ahead took; none if the lease it was sent under was lost
    meanwhile (its entries went, or go, back to the group with that lease). On a lost
    reply its acks go back in front of ``acks``, to be sent again with a resync."""
    try:
        got = lease.receive(call)
    except BaseException:
        acks[:0] = call.acks
        raise
    if call.consumer_id != lease.consumer_id and got.status == 1:
        got.items.clear()
    return got


def create_group(conn: Connection, sub: TopicSubscription) -> bool:
    """Create the group at its start position if it does not exist (MKSTREAM)."""
    created = conn.run(
        "topic_create", [sub.topic.keys.stream, sub.keys.cursor], [sub.group, sub.start]
    )
    return bool(created)


def recover_group(
    conn: Connection, sub: TopicSubscription, consumer: str, *, leave: bool = False
) -> int:
    """Give a consumer's entries back to its group if its lease expired (or it leaves)."""
    k = sub.keys
    n, trimmed = conn.run(
        "topic_recover",
        [
            sub.topic.keys.stream,
            k.leases,
            k.consumers,
            k.retry,
            k.stats,
            k.started,
            k.history,
        ],
        [k.group, consumer, PARKED, "1" if leave else "0"],
    )
    if trimmed:
        log.warning(
            "topic %s: %d entries held by consumer %s were trimmed from the stream before "
            "they were done (retention too short for the backlog?)",
            sub.name,
            trimmed,
            consumer,
        )
    if n > 0 and not leave:
        log.warning(
            "topic %s: consumer %s missed its lease; %d entries went back to the group",
            sub.name,
            consumer,
            n,
        )
    return int(n)


def recover_expired(conn: Connection, sub: TopicSubscription) -> None:
    seconds, micros = conn.call("TIME")
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    for raw in conn.call("ZRANGEBYSCORE", sub.keys.leases, "-inf", f"({now_ms}"):
        recover_group(conn, sub, raw.decode())


def group_idle(conn: Connection, sub: TopicSubscription) -> bool:
    """True when the group has read the whole stream, holds nothing and has no retries."""
    stream = sub.topic.keys.stream
    groups, last, retrying = conn.pipeline(
        [
            ("XINFO", "GROUPS", stream),
            ("XREVRANGE", stream, "+", "-", "COUNT", 1),
            ("ZCARD", sub.keys.retry),
        ],
        transaction=False,
    )
    for info in map(pairs, groups):
        if text(info["name"]) != sub.group:
            continue
        delivered = text(info["last-delivered-id"])
        caught_up = not last or _id(delivered) >= _id(last[0][0].decode())
        return caught_up and int(info["pending"]) == 0 and int(retrying) == 0
    return False


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
