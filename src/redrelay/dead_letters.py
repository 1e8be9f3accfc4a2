"""A queue's dead letters: listing, requeueing and purging (the :class:`Queue` mixin)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import dead_store
from .protocol.keys import QueueKeys
from .records import DeadLetter, _pairs, decode_dead_letter

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["QueueDeadLetters"]


class QueueDeadLetters:
    """Dead-letter operations of :class:`~redrelay.queue.Queue` (moved here whole, so
    that queue.py stays under 500 lines)."""

    relay: Relay

    def shard_keys(self, *, register: bool = False) -> list[QueueKeys]:
        raise NotImplementedError  # Queue's

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, newest first (over all shards of a sharded queue)."""
        conn = self.relay.connection
        found: list[tuple[float, bytes, QueueKeys]] = []
        for k in self.shard_keys():
            reply = conn.call("ZREVRANGE", k.dead, 0, offset + limit - 1, "WITHSCORES")
            found += [(float(score), i, k) for i, score in _pairs(reply)]
        found.sort(key=lambda item: item[0], reverse=True)
        page = found[offset : offset + limit]
        letters: list[DeadLetter] = []
        for k in self.shard_keys():
            ids = [i for _, i, owner in page if owner is k]
            if ids:
                records = conn.call("HMGET", k.dead_data, *ids)
                letters += [decode_dead_letter(r) for r in records if r is not None]
        letters.sort(key=lambda letter: letter.dead_at, reverse=True)
        return letters

    def iter_dead_ids(self, batch: int = 500) -> Iterator[list[str]]:
        """Dead-letter ids in batches, oldest first per shard (for bulk requeue and purge)."""
        for k in self.shard_keys():
            yield from dead_store.iter_ids(self.relay.connection, k.dead, batch)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or these ids) back to the end of the queue, counters reset.

        Each id moves exactly once, even if two operators requeue at the same time. A
        dead letter of a sharded queue goes back to its own shard.
        """
        wanted = None if ids is None else list(ids)
        conn = self.relay.connection
        total = 0
        for k in self.shard_keys():
            keys = [k.dead, k.dead_data, k.ready, k.prio, k.prio_seq]

            def move(args: list[Any], keys: list[str] = keys) -> Any:
                return conn.run("requeue_dead", keys, args)

            total += dead_store.requeue(conn, k.dead, k.dead_data, wanted, move)
        return total

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or these ids). Returns how many were deleted."""
        wanted = None if ids is None else list(ids)
        conn = self.relay.connection
        return sum(
            dead_store.purge(conn, k.dead, k.dead_data, wanted)
            for k in self.shard_keys()
        )
