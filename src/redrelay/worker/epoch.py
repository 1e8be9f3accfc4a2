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
    """Checks the epoch key; ``wipes`` counts the data losses seen."""

    def __init__(self, conn: Connection, namespace: str) -> None:
        self.conn = conn
        self.key = epoch_key(namespace)
        self.epoch: bytes | None = None
        self.wipes = 0

    def check(self) -> bool:
        """Return False (after reporting) if the data set changed since the last check."""
        mine = secrets.token_hex(8).encode()
        # GET first: SET is refused by a full Redis even when it would change nothing,
        # and a worker must be able to start on a full Redis to drain it.
        current: bytes | None = self.conn.call("GET", self.key)
        if current is None:
            try:
                self.conn.call("SET", self.key, mine, "NX")
            except BrokerFull:
                log.warning(
                    "Redis at %s is full: cannot store the epoch key %s yet",
                    redact(self.conn.url),
                    self.key,
                )
                if self.epoch is None:
                    return True  # nothing seen yet: the next check stores it
            current = self.conn.call("GET", self.key)
        if self.epoch is None or current == self.epoch:
            self.epoch = current
            return True
        self.wipes += 1
        log.error(
            "Redis at %s lost its data (epoch key %s %s): messages that were queued, delayed, "
            "in flight or dead before are gone. Run Redis with appendonly yes; check for a "
            "restart without persistence, a FLUSHALL or a failover to an empty replica.",
            redact(self.conn.url),
            self.key,
            "was replaced" if current != mine else "was missing",
        )
        self.epoch = current
        return False
