"""Detect a Redis that lost its data (restarted without persistence, flushed, failed over).

A wiped server answers as if all were well: queues look empty, leases look free. So each
worker keeps an *epoch*: a random value stored once under ``<namespace>:epoch``. If the key
is gone, or holds another value than the one this worker saw, the data set was replaced;
the worker reports it (ERROR log line, counter) and carries on with the new data set.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from ..errors import BrokerFull
from ..io.sync import redact
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
        return ok
