"""A queue's dead letters: listing, requeueing and purging (the :class:`Queue` mixin)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .protocol.keys import QueueKeys
from .records import DeadLetter, _pairs, decode_dead_letter, requeue_args

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
            start = 0
            while ids := self.relay.connection.call(
                "ZRANGE", k.dead, start, start + batch - 1
            ):
                yield [i.decode() for i in ids]
                start += batch

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or these ids) back to the end of the queue, counters reset.

        Each id moves exactly once, even if two operators requeue at the same time. A
        dead letter of a sharded queue goes back to its own shard.
        """
        wanted = None if ids is None else list(ids)
        return sum(self._requeue_dead(k, wanted) for k in self.shard_keys())

    def _requeue_dead(self, k: QueueKeys, ids: list[str] | None) -> int:
        total = 0
        for chunk in self._id_chunks(k, ids):
            records = self.relay.connection.call("HMGET", k.dead_data, *chunk)
            args = requeue_args(chunk, records)
            if args:
                total += int(
                    self.relay.connection.run(
                        "requeue_dead",
                        [k.dead, k.dead_data, k.ready, k.prio, k.prio_seq],
                        args,
                    )
                )
        return total

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or these ids). Returns how many were deleted."""
        wanted = None if ids is None else list(ids)
        total = 0
        for k in self.shard_keys():
            for chunk in self._id_chunks(k, wanted):
                total += int(
                    self.relay.connection.run(
                        "purge_dead", [k.dead, k.dead_data], chunk
                    )
                )
        return total

    def _id_chunks(self, k: QueueKeys, ids: list[str] | None) -> Iterator[list[str]]:
        if ids is None:
            # Only the letters that are dead now: one that dies again meanwhile gets a later
            # score, so requeueing everything from a failing queue ends. Always read from
            # the start: the previous chunk is gone by the time we read on. The clock is
            # the one of the node holding the shard, which stamped the deaths.
            now_ms = self.relay.connection.time_ms(k.dead)
            while raw := self.relay.connection.call(
                "ZRANGEBYSCORE", k.dead, "-inf", now_ms, "LIMIT", 0, 500
            ):
                yield [i.decode() for i in raw]
            return
        for start in range(0, len(ids), 500):
            yield ids[start : start + 500]
