"""``relay.drain()``: run a relay's consumers until their queues are empty (tests, scripts)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import DrainTimeout
from ..handlers import Consumer
from .runner import Runner

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["drain"]


def drain(
    relay: Relay, *, queues: Iterable[str] | None = None, timeout: float = 10.0
) -> None:
    """Run consumers until their queues hold nothing ready, delayed or in flight."""
    runner = Runner(relay, queues=queues, subscribers=False, poll=0.01)
    runner.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if runner.pending() == 0 and all(_empty(c) for c in runner.consumers):
                if runner.topics is None or runner.topics.idle():
                    return
            if time.monotonic() > deadline:
                left = {
                    c.name: dataclasses.asdict(c.queue.stats())
                    for c in runner.consumers
                }
                if runner.topics is not None:
                    left.update(runner.topics.backlog())
                raise DrainTimeout(f"queues not empty after {timeout}s: {left}")
            time.sleep(0.01)
    finally:
        runner.stop(grace=timeout)


def _empty(consumer: Consumer) -> bool:
    stats = consumer.queue.stats()
    return stats.ready == 0 and stats.delayed == 0 and stats.in_flight == 0
