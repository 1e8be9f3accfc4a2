"""A dead-letter set, whoever owns it: a queue's shard or a topic's group.

A dead set is a sorted set of ids scored by the time each died (``dead``) beside a hash
of their records (``dead_data``), both under the owner's hash tag. Queues and topics page,
chunk, requeue and purge it the same way; only the script that moves a letter back
differs, so this module holds the one copy of the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .io.sync import Connection
from .records import requeue_args

__all__ = ["CHUNK", "id_chunks", "iter_ids", "purge", "requeue"]

CHUNK = 500


def iter_ids(conn: Connection, dead: str, batch: int = CHUNK) -> Iterator[list[str]]:
    """Dead ids in batches, oldest first."""
    start = 0
    while ids := conn.call("ZRANGE", dead, start, start + batch - 1):
        yield [i.decode() for i in ids]
        start += batch


def id_chunks(
    conn: Connection, dead: str, ids: Iterable[str] | None
) -> Iterator[list[str]]:
    """These ids in chunks, or (``None``) every letter dead now.

    Only the letters dead now: one that dies again meanwhile gets a later score, so
    requeueing everything from a failing queue ends. Always read from the start: the
    previous chunk is gone by the time we read on. The clock is the one of the node
    holding the set, which stamped the deaths.
    """
    if ids is None:
        now_ms = conn.time_ms(dead)
        while raw := conn.call(
            "ZRANGEBYSCORE", dead, "-inf", now_ms, "LIMIT", 0, CHUNK
        ):
            yield [i.decode() for i in raw]
        return
    wanted = list(ids)
    for start in range(0, len(wanted), CHUNK):
        yield wanted[start : start + CHUNK]


def requeue(
    conn: Connection,
    dead: str,
    dead_data: str,
    ids: Iterable[str] | None,
    move: Callable[[list[Any]], Any],
) -> int:
    """Requeue these letters (or all): ``move(args)`` runs the owner's script on
    ``id, entry, ...`` (counters reset) and returns how many moved."""
    total = 0
    for chunk in id_chunks(conn, dead, ids):
        args = requeue_args(chunk, conn.call("HMGET", dead_data, *chunk))
        if args:
            total += int(move(args))
    return total


def purge(
    conn: Connection, dead: str, dead_data: str, ids: Iterable[str] | None
) -> int:
    """Delete these letters (or all); returns how many were deleted."""
    return sum(
        int(conn.run("purge_dead", [dead, dead_data], chunk))
        for chunk in id_chunks(conn, dead, ids)
    )
