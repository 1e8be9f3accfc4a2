"""Consumer leases: identity, fetch, the transitions of a delivery, heartbeats and recovery.

A *consumer* is one queue in one worker process. It holds a lease in the queue's ``leases``
sorted set (expiry in server time) and its deliveries in its own in-flight hash. Every
delivery's tag (``<consumer id>:<n>``) is its lease token: once a lease is taken over the
consumer's hash is gone, so a late ack, retry or bury finds nothing and is rejected.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .._faults import crash_point
from .._logs import outage
from ..errors import BrokerFull, BrokerUnavailable
from ..protocol.keys import QueueKeys
from ..protocol.results import bucket_of
from ..protocol.transitions import to_ms
from .liveness import waiting

if TYPE_CHECKING:
    from ..config import ConsumerOptions
    from ..io.sync import Connection, Pending, Ready
    from .results import Tracker

__all__ = ["Batch", "Fetch", "Held", "Lease", "Reservation", "recover_expired"]

log = logging.getLogger("redrelay.worker")

#: Delayed entries promoted per fetch.
PROMOTE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Reservation:
    """The delivery tags ``<consumer_id>:<first>...`` one fetch may hand out."""

    consumer_id: str
    generation: int
    first: int
    count: int

    def tags(self) -> list[str]:
        """Every tag this fetch may hand out (release skips the ones it did not take)."""
        prefix = f"{self.consumer_id}:"
        return [prefix + str(n) for n in range(self.first, self.first + self.count)]


@dataclass(slots=True)
class Batch:
    """Entries from one fetch, with the lease generation they were fetched under."""

    generation: int
    tags: list[str]
    entries: list[bytes]
    #: The shard it came from (0 for a queue that is not sharded).
    shard: int = 0


class Held(float):
    """Seconds to wait because a queue-wide flow limit (rate or concurrency) holds the
    ready entries back: they stay queued, and blocking on the list would not wait."""


@dataclass(slots=True)
class Fetch:
    """A fetch sent ahead (see :meth:`Lease.send_fetch`): its tags, the acks it carries,
    and its reply while that is on the wire (None: not sent, or to be sent again)."""

    reservation: Reservation
    acks: list[str]
    reply: Pending | Ready | None = None


class Lease:
    """This process's consumer of one queue."""

    def __init__(
        self, conn: Connection, keys: QueueKeys, options: ConsumerOptions
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.options = options
        self.lease_ms = to_ms(options.lease)
        #: fetch.lua's flow-limit arguments (protocol/flow.py).
        self.limit_args = options.limits.args()
        self.generation = 0
        self.consumer_id = ""
        self.lost = 0
        self._seq = 0
        self._lock = threading.Lock()
        #: Results and cancellations, for a consumer with ``result_ttl=`` (results.py).
        self.tracker: Tracker | None = None

    def join(self) -> None:
        """Register under a fresh consumer id (first start, or after the lease was lost)."""
        with self._lock:
            self.consumer_id = uuid.uuid4().hex[:16]
            self.generation += 1
            self._seq = 0
            info = orjson.dumps(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started": time.time(),
                    # for the dashboard's workers page (last heartbeat = expiry - lease)
                    "concurrency": self.options.concurrency,
                    "lease": self.options.lease,
                }
            )
            cid = self.consumer_id
        self.conn.run(
            "heartbeat",
            [self.keys.leases, self.keys.consumers],
            [cid, self.lease_ms, info],
        )

    def heartbeat(self) -> bool:
        """Extend the lease. If it was taken over, log it, join again and return False."""
        cid = self.consumer_id
        alive = self.conn.run(
            "heartbeat",
            [self.keys.leases, self.keys.consumers],
            [cid, self.lease_ms, b""],
        )
        if self.tracker is not None:
            self.tracker.refresh()  # cancels of taken messages, once a heartbeat
        if alive:
            return True
        if cid == self.consumer_id:
            self.lost += 1
            log.warning(
                "queue %s: the lease of consumer %s expired and was taken over (the process stalled or was cut "
                "off for over %.1fs); its deliveries went back to the queue; joining again",
                self.keys.name,
                cid,
                self.options.lease,
            )
            self.join()
        return False

    def reserve(self, count: int) -> Reservation:
        """Tags for one fetch. Keep it if the fetch fails: see :meth:`fetch`."""
        with self._lock:
            first = self._seq
            self._seq += count
            return Reservation(self.consumer_id, self.generation, first, count)

    def fetch(
        self,
        count: int,
        acks: Sequence[str] = (),
        reservation: Reservation | None = None,
    ) -> tuple[int, Batch | float | None]:
        """Ack ``acks``, then take up to ``count`` entries, in one round trip.

        Returns how many acks were still held, and a Batch, or the seconds until the next
        delayed message is due (``-1``: none) when the queue is empty, or None if the lease
        was lost.

        A fetch whose reply was lost may still have run: retry it with the same
        ``reservation`` (and acks), and fetch.lua hands back what the lost call took
        instead of taking more, so nothing sits in flight with no one working on it.
        """
        reservation = self._current(reservation, count)
        keys, args = self._fetch_call(reservation, acks)
        return self._parse(reservation, self.conn.run("fetch", keys, args))

    #: :meth:`send_fetch` can wait for an entry itself (a sharded lease cannot).
    waits_in_fetch = True

    def send_fetch(self, fetch: Fetch, wait: float | None = None) -> None:
        """Send ``fetch`` (again, after a lost reply) without waiting: :meth:`receive`
        reads the reply. Redis moves the next batch while this thread runs the last one.

        With ``wait`` (seconds), an empty queue's fetch: the same connection carries
        first the blocking wait of :meth:`wait`, which holds the fetch back in Redis
        until an entry arrives or ``wait`` passes, so the entry that ends the wait is
        fetched in that round trip, not in a second one. Nothing moves while the fetch
        is held back (the wait moves the entry onto itself): a process killed meanwhile
        leaves the entry in the queue, and its connection's fetch never runs.
        """
        fetch.reply = None
        fetch.reservation = self._current(fetch.reservation, fetch.reservation.count)
        keys, args = self._fetch_call(fetch.reservation, fetch.acks)
        first = None if wait is None else self._wait_command(wait)
        fetch.reply = self.conn.send_script("fetch", keys, args, first=first)

    def receive(self, fetch: Fetch) -> tuple[int, Batch | float | None]:
        """The reply of a sent fetch, as :meth:`fetch` returns it. If this raises, the
        fetch is left unsent: send it again, with the same tags and acks."""
        reply, fetch.reply = fetch.reply, None
        if reply is None:
            raise RuntimeError("receive() of a fetch that was not sent")
        return self._parse(fetch.reservation, reply.result())

    def _current(self, reservation: Reservation | None, count: int) -> Reservation:
        if reservation is None or reservation.generation != self.generation:
            return self.reserve(count)
        return reservation

    def _fetch_call(
        self, reservation: Reservation, acks: Sequence[str]
    ) -> tuple[list[str], list[Any]]:
        k, cid = self.keys, reservation.consumer_id
        keys = [
            k.ready,
            k.leases,
            k.inflight(cid),
            k.delayed,
            k.delayed_data,
            k.stats,
            k.started(cid),
            k.history,
            k.prio,
            k.prio_seq,
            k.limits,
            k.slots,
            k.parked,
            k.parked_due,
        ]
        args = [cid, reservation.count, reservation.first, PROMOTE_LIMIT]
        return keys, [*args, *self.limit_args, *acks]

    @staticmethod
    def _parse(
        reservation: Reservation, result: list[Any]
    ) -> tuple[int, Batch | float | None]:
        held, status = result[0], result[1]
        if status == -1:
            return held, None
        if status == 0:
            return held, (result[2] / 1000 if result[2] >= 0 else -1.0)
        if status == 2:
            return held, Held(result[2] / 1000)
        entries = result[2:]
        prefix, first = f"{reservation.consumer_id}:", reservation.first
        tags = [prefix + str(n) for n in range(first, first + len(entries))]
        return held, Batch(reservation.generation, tags, entries)

    def ack(self, tags: list[str]) -> int:
        """Ack deliveries; returns how many were still held (the rest were rejected as stale)."""
        if not tags:
            return 0
        if self.tracker is not None:
            return self.tracker.complete(tags)  # the ack that writes the results
        cid = _consumer_of(tags[0])
        if not tags[-1].startswith(cid + ":"):
            # Tags of two consumer ids (the lease was joined again between them): each
            # is acked in its own consumer's hash, not rejected in the other's.
            held = 0
            for other in dict.fromkeys(map(_consumer_of, tags)):
                mine = [t for t in tags if _consumer_of(t) == other]
                held += self._ack(other, mine)
            return held
        return self._ack(cid, tags)

    def _ack(self, cid: str, tags: list[str]) -> int:
        k = self.keys
        return int(
            self.conn.run(
                "ack",
                [k.inflight(cid), k.stats, k.started(cid), k.history],
                tags,
            )
        )

    def mark(self, tag: str) -> bool:
        """Record that a redelivered entry starts now; False if the tag is no longer held."""
        cid = _consumer_of(tag)
        return bool(
            self.conn.run(
                "mark", [self.keys.inflight(cid), self.keys.started(cid)], [tag]
            )
        )

    def retry(self, tag: str, entry: bytes, delay: float, msg_id: str) -> bool:
        k, cid = self.keys, _consumer_of(tag)
        return bool(
            self.conn.run(
                "retry",
                [
                    k.inflight(cid),
                    k.ready,
                    k.delayed,
                    k.delayed_data,
                    k.stats,
                    k.started(cid),
                    k.history,
                    k.prio,
                    k.prio_seq,
                ],
                [tag, entry, to_ms(delay), msg_id],
            )
        )

    def bury(
        self,
        tag: str,
        msg_id: str,
        record: bytes,
        cap: int,
        failure: bytes | None = None,
        tracked: bool = True,
    ) -> bool:
        """Dead-letter a delivery; with ``failure`` (result_ttl=), store it as the result:
        in the message's record if it is ``tracked``, else in a result bucket."""
        k, cid = self.keys, _consumer_of(tag)
        keys = [
            k.inflight(cid), k.dead, k.dead_data, k.stats, k.started(cid), k.history,
        ]  # fmt: skip
        args: list[Any] = [tag, msg_id, record, cap]
        tracker = self.tracker
        if failure is not None and tracker is not None:
            tracker.settle()  # the call that marks it running goes first
            bucket = bucket_of(k, tracker.ttl_ms, int(time.time() * 1000))
            keys += [k.job(msg_id), k.cancels, k.running, k.results, bucket]
            args += [tracker.ttl_ms, failure, k.done, 1 if tracked else 0]
        return bool(self.conn.run("bury", keys, args))

    def release(self, tags: list[str]) -> int:
        """Give back fetched-but-unstarted deliveries, unchanged, to the front of the queue."""
        if not tags:
            return 0
        return int(
            self.conn.run(
                "release",
                [
                    self.keys.inflight(_consumer_of(tags[0])),
                    self.keys.ready,
                    self.keys.prio,
                    self.keys.prio_seq,
                ],
                tags,
            )
        )

    def leave(self) -> int:
        """Drop the lease cleanly, giving back anything still held. Only when nothing runs."""
        k, cid = self.keys, self.consumer_id
        return int(
            self.conn.run(
                "leave",
                [
                    k.leases,
                    k.inflight(cid),
                    k.ready,
                    k.consumers,
                    k.started(cid),
                    k.prio,
                    k.prio_seq,
                    k.slots,
                ],
                [cid],
            )
        )

    def current(self, batch: Batch) -> bool:
        """Whether ``batch`` was fetched under the lease held now (not one taken over)."""
        return batch.generation == self.generation

    def wait(self, seconds: float) -> None:
        """Block until the queue may have entries, at most ``seconds`` (BLMOVE onto itself)."""
        self.conn.call(*self._wait_command(seconds))

    def _wait_command(self, seconds: float) -> tuple[str, str, str, str, str, float]:
        ready = self.keys.ready
        return ("BLMOVE", ready, ready, "RIGHT", "RIGHT", seconds)

    def recover(self) -> int:
        """Recover expired consumers' deliveries (see :func:`recover_expired`)."""
        return recover_expired(self.conn, self.keys)


def _consumer_of(tag: str) -> str:
    """The consumer a delivery tag was issued to (its lease, not necessarily the current one)."""
    return tag.rpartition(":")[0]


def recover_expired(conn: Connection, keys: QueueKeys) -> int:
    """Move every expired consumer's deliveries back to ready. Returns entries recovered."""
    now_ms = conn.time_ms(keys.leases)  # the clock that stamped the leases
    expired: list[Any] = conn.call("ZRANGEBYSCORE", keys.leases, "-inf", f"({now_ms}")
    total = 0
    for raw in expired:
        cid = raw.decode()
        crash_point("recover")
        n = int(
            conn.run(
                "recover",
                [
                    keys.leases,
                    keys.inflight(cid),
                    keys.ready,
                    keys.consumers,
                    keys.stats,
                    keys.started(cid),
                    keys.history,
                    keys.prio,
                    keys.prio_seq,
                ],
                [cid],
            )
        )
        if n >= 0:
            total += n
            log.warning(
                "queue %s: consumer %s missed its lease; %d deliveries returned to the queue",
                keys.name,
                cid,
                n,
            )
    return total


def retry_forever(action: Any, stop: threading.Event, what: str) -> Any:
    """Run ``action()`` until Redis answers or ``stop`` is set (then re-raise).

    Used for transitions that must not be dropped: an ack that never reaches Redis would
    leave the message held by a live consumer forever. Each transition is idempotent under
    its tag, so repeating one after a lost reply is safe.
    """
    delay = 0.05
    ident = 0
    try:
        while True:
            try:
                return action()
            except (BrokerUnavailable, BrokerFull) as exc:
                # BrokerFull too: an ack or a lease renewal refused at maxmemory is
                # retried (the worker waits for room) rather than ending the worker.
                if stop.is_set():
                    raise
                ident = threading.get_ident()
                waiting(ident, time.monotonic())  # an outage, not a stuck thread
                outage.warning(what, "%s: Redis unavailable (%s); retrying", what, exc)
                stop.wait(delay)
                delay = min(delay * 2, 2.0)
    finally:
        if ident:
            waiting(ident, None)
