"""Log lines that repeat during an outage, rate-limited.

While Redis is away every consumer thread, the keeper and each retried transition say
so, every second or faster: hundreds of lines that hide the one that matters (308 lines
in 24 s with 3 queues, issue 16). :data:`outage` logs the first line of each kind at
once, then at most one per :data:`REPEAT_INTERVAL` seconds, saying how many it held back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["REPEAT_INTERVAL", "RateLimited", "outage"]

#: Seconds between two lines of the same kind.
REPEAT_INTERVAL = 30.0


class RateLimited:
    """A logger wrapper: one line per key per ``interval`` seconds, counting the rest."""

    def __init__(self, logger: logging.Logger, interval: float = REPEAT_INTERVAL):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        #: key -> (monotonic time of the last line, lines held back since)
        self._seen: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-self.interval, 0))
            if now - last < self.interval:
                self._seen[key] = (last, held + 1)
                return
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # keys name queues: bound the memory anyway
                self._seen = {key: (now, 0)}
        if held:
            msg += f" ({held} similar lines in the last {now - last:.0f}s not shown)"
        self.logger.warning(msg, *args)


#: Redis-unavailable lines of the worker (fetches, heartbeats, retried transitions).
outage = RateLimited(logging.getLogger("redrelay.worker"))
