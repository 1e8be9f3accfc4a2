"""Detect a Redis that lost its data (restarted without persistence, flushed, failed over).

A wiped server answers as if all were well: queues look empty, leases look free. So each
worker keeps an *epoch*: a random value stored once under ``<namespace>:epoch``. If the key
is gone, or holds another value than the one this worker saw, the data set was replaced;
the worker reports it (ERROR log line, counter) and carries on with the new data set.

On Redis Cluster it also reports (WARNING, counter) a node's keys served by another node
since the last check: a failover to a replica loses what the old primary had not
replicated, and nothing else would say so.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import BrokerFull
from ..io.sync import redact, translate
from ..protocol.keys import epoch_key

if TYPE_CHECKING:
    from ..io.sync import Connection

__all__ = ["EpochWatch"]

log = logging.getLogger("redrelay.worker")


class EpochWatch:
    """Checks the epoch key; ``wipes`` counts the data losses seen.

    On Redis Cluster each node can lose its data on its own, so there is one epoch key per
    primary as well (``<namespace>:{epoch-<n>}``, a tag whose slot that node holds).
    """

    def __init__(self, conn: Connection, namespace: str) -> None:
        self.conn = conn
        self.namespace = namespace
        self.key = epoch_key(namespace)
        self.epochs: dict[str, bytes] = {}
        self.wipes = 0
        #: On a cluster: the node that served each per-node epoch key at the last check.
        self.owners: dict[str, str] = {}
        #: Times a per-node key was found on another node (a failover, or resharding).
        self.moves = 0

    def keys(self) -> list[str]:
        """The epoch keys: the namespace's, and on a cluster one per primary."""
        tags = self.conn.node_tags("epoch-") if self.conn.is_cluster else []
        return [self.key] + [f"{self.namespace}:{{{tag}}}" for tag in tags]

    def check(self) -> bool:
        """Return False (after reporting) if the data set changed since the last check."""
        mine = secrets.token_hex(8).encode()
        keys = self.keys()
        # GET first: SET is refused by a full Redis even when it would change nothing,
        # and a worker must be able to start on a full Redis to drain it. Not a
        # transaction: on a cluster the keys live on different nodes.
        currents = self.conn.pipeline([("GET", k) for k in keys], transaction=False)
        missing = [k for k, v in zip(keys, currents, strict=True) if v is None]
        if missing:
            try:
                commands: list[tuple[str | bytes, ...]] = []
                for key in missing:
                    commands += [("SET", key, mine, "NX"), ("GET", key)]
                replies = self.conn.pipeline(commands, transaction=False)
                stored = dict(zip(missing, replies[1::2], strict=True))
                currents = [
                    stored.get(k, v) for k, v in zip(keys, currents, strict=True)
                ]
            except BrokerFull:
                log.warning(
                    "Redis at %s is full: cannot store the keys that detect data loss "
                    "(%s) yet",
                    redact(self.conn.url),
                    ", ".join(missing),
                )
        ok = True
        for key, current in zip(keys, currents, strict=True):
            seen = self.epochs.get(key)
            if current is None:  # full, and not stored yet: the next check stores it
                if seen is None:
                    continue
            else:
                self.epochs[key] = current
            if seen is None or current == seen:
                continue
            if current is None:
                self.epochs.pop(key, None)
            ok = False
            self.wipes += 1
            log.error(
                "Redis at %s lost its data (marker key %s %s): messages that were queued, delayed, "
                "in flight or dead before are gone. Run Redis with appendonly yes; check for a "
                "restart without persistence, a FLUSHALL or a failover to an empty replica.",
                redact(self.conn.url),
                key,
                "was replaced"
                if current is not None and current != mine
                else "was missing",
            )
        if self.conn.is_cluster:
            self._watch_owners(keys[1:])
        return ok

    def _watch_owners(self, keys: list[str]) -> None:
        """Report a per-node key now served by another node: after a failover, what the
        old primary acknowledged but had not replicated is gone (docs/scaling.md)."""
        client: Any = self.conn.client
        for key in keys:
            with translate(self.conn.url, self.conn.namespace):  # slots moving
                node = str(client.get_node_from_key(key).name)
            seen, self.owners[key] = self.owners.get(key), node
            if seen is None or seen == node:
                continue
            self.moves += 1
            log.warning(
                "Redis Cluster at %s: the slot of %s is served by %s now, not %s (a "
                "failover, or resharding). After a failover, the writes %s acknowledged "
                "but had not replicated yet are gone: puts lost, fetches and acks redone "
                "(those messages run again); see docs/scaling.md, Failover.",
                redact(self.conn.url),
                key,
                node,
                seen,
                seen,
            )
