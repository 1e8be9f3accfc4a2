"""Consumers of sharded queues: one :class:`Lease` per shard behind the Lease interface.

The runner holds whatever :func:`new_lease` returns and calls the same methods on it
(fetch, ack, retry, bury, release, heartbeat, recover, wait), so sharding costs it nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .leases import Batch, Fetch, Lease, Reservation, _consumer_of
from .limits import register_limits

if TYPE_CHECKING:
    from ..config import ConsumerOptions
    from ..io.sync import Connection
    from ..protocol.keys import QueueKeys
    from ..queue import Queue

__all__ = ["ShardReservation", "ShardedLease", "new_lease"]


def new_lease(conn: Connection, queue: Queue, options: ConsumerOptions) -> Any:
    """A :class:`Lease`, or a :class:`ShardedLease` for a queue with several shards.

    Registers the queue first (which reads or stores its shard count), then its flow
    limits (:func:`~redrelay.worker.limits.register_limits`).
    """
    shards = queue.shard_keys(register=True)
    lease: Lease | ShardedLease
    if len(shards) == 1:
        lease = Lease(conn, shards[0], options)
    else:
        lease = ShardedLease(conn, queue.keys, shards, options)
    register_limits(conn, queue.name, options, lease)
    return lease


@dataclass(slots=True)
class ShardReservation:
    """A reservation on one shard; moved to the shard being tried, so that a fetch retried
    after a lost reply goes to the shard whose call was lost (see :meth:`Lease.fetch`)."""

    shard: int
    inner: Reservation
    #: Set once a fetch was sent with it: a retry must go to the same shard.
    sent: bool = False

    def tags(self) -> list[str]:
        """Every tag a fetch with it may hand out (on the shard tried last)."""
        return self.inner.tags()


class ShardedLease:
    """A consumer of a sharded queue: one :class:`Lease` per shard, the same interface.

    A thread fetches again from the shard of its last batch (its acks ride on that fetch:
    one round trip per batch) up to ``STICK`` times in a row, then starts at the next shard
    in turn (a counter shared by the threads), and it moves on past an empty shard; so every
    shard is served. Acks that belong to another shard than the one fetched cost one
    round trip more.
    """

    #: Batches a thread takes in a row from one shard before it moves to the next in turn.
    STICK = 8

    def __init__(
        self,
        conn: Connection,
        keys: QueueKeys,
        shards: Sequence[QueueKeys],
        options: ConsumerOptions,
    ) -> None:
        self.conn = conn
        #: The plain queue's keys: they name the queue in log lines.
        self.keys = keys
        self.options = options
        self.shards = [Lease(conn, k, options) for k in shards]
        #: Results are not stored for sharded queues yet (see worker/results.py).
        self.tracker = None
        self._turn = itertools.count()
        self._by_consumer: dict[str, int] = {}
        #: Per thread: ``n`` batches taken in a row from one shard, the shard ``waited`` on.
        self._streak = threading.local()

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.shards)

    def _index(self) -> None:
        for i, lease in enumerate(self.shards):
            self._by_consumer[lease.consumer_id] = i

    def _shard_of(self, tag: str) -> int:
        cid = _consumer_of(tag)
        if cid not in self._by_consumer:
            self._index()  # a shard joined again since (fetch found its lease lost)
        return self._by_consumer[cid]

    def _group(self, tags: Sequence[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for tag in tags:
            groups.setdefault(self._shard_of(tag), []).append(tag)
        return groups

    def join(self) -> None:
        for lease in self.shards:
            lease.join()
        self._index()

    def heartbeat(self) -> bool:
        alive = [lease.heartbeat() for lease in self.shards]
        self._index()
        return all(alive)

    def reserve(self, count: int) -> ShardReservation:
        """Tags on the shard this thread last waited on (it may have woken for an entry
        there), else on the next shard in turn."""
        shard = getattr(self._streak, "waited", None)
        if shard is None:
            shard = next(self._turn) % len(self.shards)
        self._streak.waited = None
        return ShardReservation(shard, self.shards[shard].reserve(count))

    def fetch(
        self,
        count: int,
        acks: Sequence[str] = (),
        reservation: ShardReservation | None = None,
    ) -> tuple[int, Batch | float | None]:
        """Like :meth:`Lease.fetch`, over the shards from the reserved one on.

        Acks of the first shard tried ride on its fetch; the others go first, one call per
        shard. Returns the first batch found, else the soonest delayed message's wait.
        """
        if reservation is None:
            reservation = self.reserve(count)
        held = 0
        groups = self._group(acks)
        self._stick(reservation, groups, count)
        reservation.sent = True
        for shard, tags in groups.items():
            if shard != reservation.shard:
                held += self.shards[shard].ack(tags)
        soonest = -1.0
        n = len(self.shards)
        for step in range(n):
            if step:
                shard = (reservation.shard + 1) % n
                reservation.shard = shard
                reservation.inner = self.shards[shard].reserve(count)
            lease = self.shards[reservation.shard]
            tags = groups.pop(reservation.shard, []) if step == 0 else []
            got_held, got = lease.fetch(count, tags, reservation.inner)
            held += got_held
            if got is None or isinstance(got, Batch):
                if got is not None:
                    got.shard = reservation.shard
                return held, got
            if got >= 0:
                soonest = got if soonest < 0 else min(soonest, got)
        return held, soonest

    #: An idle thread waits on one shard, then fetches from it (:meth:`wait`):
    #: the wait cannot ride on a fetch sent beforehand.
    waits_in_fetch = False

    def send_fetch(self, fetch: Fetch, wait: float | None = None) -> None:
        """No fetch ahead over shards (which shard answers depends on the replies before):
        the fetch runs in :meth:`receive` (``wait`` is never given: see
        ``waits_in_fetch``)."""
        fetch.reply = None

    def receive(self, fetch: Fetch) -> tuple[int, Batch | float | None]:
        """Run ``fetch`` now (see :meth:`send_fetch`), as :meth:`fetch`."""
        reservation: Any = fetch.reservation
        return self.fetch(reservation.inner.count, fetch.acks, reservation)

    def _stick(
        self, reservation: ShardReservation, groups: dict[int, list[str]], count: int
    ) -> None:
        """Fetch from the acks' shard again (acks ride along), up to STICK times in a row."""
        streak = getattr(self._streak, "n", 0)
        if reservation.sent or len(groups) != 1 or streak >= self.STICK:
            self._streak.n = 0
            return
        (shard,) = groups
        if shard != reservation.shard:
            reservation.shard = shard
            reservation.inner = self.shards[shard].reserve(count)
        self._streak.n = streak + 1

    def current(self, batch: Batch) -> bool:
        return self.shards[batch.shard].current(batch)

    def wait(self, seconds: float) -> None:
        """Block on one shard (in turn): Cluster cannot block on keys of several slots, so
        a message on another shard of an idle queue waits up to ``seconds``. An idle
        thread so scans the shards at most once per wait: the cost of empty shards is
        bounded per second, not paid per message."""
        shard = next(self._turn) % len(self.shards)
        self._streak.waited = shard
        self.shards[shard].wait(seconds)

    def ack(self, tags: list[str]) -> int:
        return sum(self.shards[i].ack(t) for i, t in self._group(tags).items())

    def mark(self, tag: str) -> bool:
        return self.shards[self._shard_of(tag)].mark(tag)

    def retry(self, tag: str, entry: bytes, delay: float, msg_id: str) -> bool:
        return self.shards[self._shard_of(tag)].retry(tag, entry, delay, msg_id)

    def bury(
        self,
        tag: str,
        msg_id: str,
        record: bytes,
        cap: int,
        failure: bytes | None = None,
        tracked: bool = True,
    ) -> bool:
        # The results' failure too (sharded queues refuse result_ttl=, so it is None).
        shard = self.shards[self._shard_of(tag)]
        return shard.bury(tag, msg_id, record, cap, failure, tracked)

    def release(self, tags: list[str]) -> int:
        return sum(self.shards[i].release(t) for i, t in self._group(tags).items())

    def leave(self) -> int:
        return sum(lease.leave() for lease in self.shards)

    def recover(self) -> int:
        return sum(lease.recover() for lease in self.shards)
