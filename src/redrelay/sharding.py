"""Sharded queues: one logical queue split over several hash tags (so over Cluster slots).

A queue is one hash tag (``redrelay:{emails}:...``), so on Redis Cluster it lives on one
node and its throughput is one node's. ``relay.queue("emails", shards=8)`` splits it into
eight queues with their own tags, ``{emails#0}`` ... ``{emails#7}`` (``#`` cannot appear in
a queue name, so a shard never collides with another queue), which Redis Cluster spreads
over its nodes. Every script still touches one slot: each transition is per shard.

- ``put`` picks a shard round robin per producer, or by a hash of ``dedup_key=`` (the same
  key always lands on the same shard, so deduplication stays exact).
- ``put_many`` groups its bodies by shard: atomic per shard, not across shards.
- Consumers hold a lease on every shard and start each fetch at the next shard in turn, so
  no shard starves. FIFO holds per shard, not across them.
- The shard count is stored with the queue (``<ns>:{emails}:shards``) by the first producer
  or worker; a process that declares another count gets :class:`ConfigurationError`, and
  one that declares none adopts the stored count. So producers and consumers agree.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ConfigurationError
from .protocol.keys import QueueKeys
from .protocol.requests import Plan, Step

if TYPE_CHECKING:
    from .queue import QueueStats

__all__ = [
    "MAX_SHARDS",
    "ShardPicker",
    "merge_stats",
    "resolve_shards",
    "shard_keys",
    "validate_shards",
]

#: Most shards one queue may have.
MAX_SHARDS = 1024


def validate_shards(shards: object) -> int | None:
    """``shards`` if it is None (not declared) or an int from 1 to MAX_SHARDS, else raise."""
    if shards is None:
        return None
    if (
        not isinstance(shards, int)
        or isinstance(shards, bool)
        or not 1 <= shards <= MAX_SHARDS
    ):
        raise ConfigurationError(
            f"shards= must be an int from 1 to {MAX_SHARDS}, got {shards!r}"
        )
    return shards


def shard_keys(namespace: str, name: str, shards: int) -> list[QueueKeys]:
    """The keys of each shard; one shard is the plain queue (``{emails}``, unchanged)."""
    if shards == 1:
        return [QueueKeys.of(namespace, name)]
    return [QueueKeys.of(namespace, f"{name}#{i}") for i in range(shards)]


def resolve_shards(
    keys: QueueKeys,
    name: str,
    declared: int | None,
    *,
    register: bytes | None = None,
) -> Plan[tuple[int, bool]]:
    """The queue's shard count, and whether it is settled (stored in Redis or declared),
    checked against the one stored with the queue. A plan (see
    :mod:`redrelay.protocol.requests`): the sync and async layers both drive it.

    With ``register`` (the key of the namespace's queue set) the queue is also added to
    that set and, if no count is stored yet, ``declared`` (or 1) is stored: one round trip.
    The set lives outside the queue's tag, so these are separate commands, not one script.

    :raises ConfigurationError: the stored count differs from ``declared``.
    """
    if register is not None:
        reply = yield Step(
            (
                ("SADD", register, name),
                ("SET", keys.shards, declared or 1, "NX"),
                ("GET", keys.shards),
            ),
            transaction=False,
        )
        stored = reply[2]
    else:
        stored = yield Step((("GET", keys.shards),))
    count = int(stored) if stored is not None else None
    if declared is not None and count is not None and count != declared:
        raise ConfigurationError(
            f"queue {name!r} has {count} shard(s) in Redis ({keys.shards}), but this "
            f"process declares shards={declared}: producers and workers must agree. "
            "Declare the same count everywhere, or none (the stored count is then used). "
            "To change it, stop producers and workers, drain the queue, and delete that key."
        )
    return count or declared or 1, count is not None or declared is not None


class ShardPicker:
    """Chooses the shard of each put: round robin, or by key (stable across processes)."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._turn = itertools.count()

    def next(self) -> int:
        """The next shard in turn (``next()`` on a counter is atomic under the GIL)."""
        return next(self._turn) % self.shards

    def by_key(self, key: str) -> int:
        """The shard of ``key``: CRC-32, so every process maps a key to the same shard."""
        return zlib.crc32(key.encode()) % self.shards

    def spread(self, count: int) -> list[list[int]]:
        """Indexes ``0..count-1`` dealt round robin over the shards, from the next turn."""
        start = self.next()
        groups: list[list[int]] = [[] for _ in range(self.shards)]
        for i in range(count):
            groups[(start + i) % self.shards].append(i)
        return groups


def merge_stats(name: str, parts: Sequence[QueueStats]) -> QueueStats:
    """One snapshot of a sharded queue: depths and counters summed over its shards.

    ``consumers`` is the most of any shard (a worker holds a lease on every shard), and
    ``oldest_age`` the oldest over all shards.
    """
    from .queue import QueueStats

    counters: dict[str, int] = {}
    for part in parts:
        for key, value in part.counters.items():
            counters[key] = counters.get(key, 0) + value
    ages = [p.oldest_age for p in parts if p.oldest_age is not None]
    return QueueStats(
        name=name,
        ready=sum(p.ready for p in parts),
        delayed=sum(p.delayed for p in parts),
        in_flight=sum(p.in_flight for p in parts),
        dead=sum(p.dead for p in parts),
        consumers=max((p.consumers for p in parts), default=0),
        expired=max((p.expired for p in parts), default=0),
        in_flight_expired=sum(p.in_flight_expired for p in parts),
        oldest_age=max(ages) if ages else None,
        counters=counters,
    )
