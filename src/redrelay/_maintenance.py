"""Purging and deleting a queue (``Queue.purge``, ``Queue.delete``): operator actions.

Kept out of ``queue.py``: producers and workers never call them. Each shard is one
script (purge.lua, delete_queue.lua), so a shard is purged or deleted atomically; a
sharded queue is handled shard by shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigurationError
from .protocol.keys import QueueKeys, queues_key

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["Purged", "delete_queue", "purge_queue"]


@dataclass(frozen=True, slots=True)
class Purged:
    """What :meth:`Queue.purge` deleted."""

    ready: int
    delayed: int


def purge_queue(queue: Queue, *, delayed: bool = False) -> Purged:
    """Delete the ready messages of ``queue`` (and its delayed ones with ``delayed``)."""
    ready = later = 0
    for k in queue.shard_keys():
        reply = queue.relay.connection.run(
            "purge",
            [k.ready, k.delayed, k.delayed_data, k.stats],
            ["1" if delayed else "0"],
        )
        ready, later = ready + int(reply[0]), later + int(reply[1])
    return Purged(ready=ready, delayed=later)


def delete_queue(queue: Queue, *, force: bool = False) -> int:
    """Delete every key of ``queue`` and forget its name; return the messages deleted.

    :raises ConfigurationError: a consumer holds a live lease (a running worker would
        bring the queue back at once) and ``force`` is not set.
    """
    conn = queue.relay.connection
    shards = queue.shard_keys()
    if not force:
        live = sum(
            int(conn.call("ZCOUNT", k.leases, conn.time_ms(k.leases), "+inf"))
            for k in shards
        )
        if live:
            raise ConfigurationError(
                f"queue {queue.name!r} has {live} live consumer(s): stop its workers "
                "first (they would recreate it), or pass force=True (--force)"
            )
    total = sum(_delete_shard(queue, k) for k in shards)
    if len(shards) > 1:
        conn.call("UNLINK", queue.keys.shards)  # a sharded queue's declared count
    conn.call("SREM", queues_key(queue.relay.namespace), queue.name)
    return total


def _delete_shard(queue: Queue, k: QueueKeys) -> int:
    conn = queue.relay.connection
    seen: list[bytes] = conn.call("ZRANGE", k.leases, 0, -1)
    while True:
        keys = [
            k.leases,
            k.ready,
            k.delayed,
            k.delayed_data,
            k.consumers,
            k.dead,
            k.dead_data,
            k.stats,
            k.shards,
            k.history,
            k.prio,
            k.prio_seq,
            k.limits,
            k.slots,
            k.parked,
            k.parked_due,
            k.cancels,
            k.running,
            k.results,
        ]
        for consumer in seen:
            keys += [k.inflight(consumer.decode()), k.started(consumer.decode())]
        done, value = conn.run("delete_queue", keys, seen)
        if done:
            return int(value)
        seen = value
