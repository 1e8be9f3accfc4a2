"""Helpers for the channel tests: collecting handlers and bounded waits."""

from __future__ import annotations

import threading
from collections.abc import Callable

from redrelay.message import Message

from .processes import wait_for as _wait_for

#: Upper bound of every wait in the channel tests (seconds).
WAIT = 10.0


def wait_for(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    _wait_for(predicate, timeout, 0.005)


class Collector:
    """A subscriber handler that records messages; ``wait(n)`` blocks until it has n."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = WAIT) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(
                    f"got {len(self.messages)} messages within {timeout} s, "
                    f"expected {count}: {self.messages!r}"
                )
            return list(self.messages)

    @property
    def bodies(self) -> list[object]:
        with self._cond:
            return [m.body for m in self.messages]
