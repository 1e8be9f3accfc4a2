"""Handler time limits: interrupt a handler that runs too long, abandon one that won't stop.

Python cannot kill a thread. So past ``time_limit`` the watchdog raises
:class:`TimeLimitExceeded` inside the handler's thread (``PyThreadState_SetAsyncExc``, as
Dramatiq does); it lands at the next Python bytecode, and the handler fails like any other
(retry with backoff, then dead letter). A handler blocked in C code (a socket read without
a timeout, say) does not see it: one second later the watchdog abandons the thread — it
performs the failure transition itself, gives back the thread's unstarted deliveries and
starts a replacement thread. If the stuck call ever returns, the abandoned thread finds
its delivery gone (its tag is no longer held) and exits.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import TimeLimitExceeded
from .liveness import Pulse

if TYPE_CHECKING:
    from ..handlers import Consumer
    from .leases import Lease, Reservation
    from .runner import Runner

__all__ = ["Slot", "interrupt", "watch"]

log = logging.getLogger("redrelay.worker")

#: Seconds a handler gets to stop after TimeLimitExceeded before its thread is abandoned.
ABANDON_AFTER = 1.0


class Slot:
    """One consumer thread's state: unstarted deliveries (which ``stop()`` gives back at
    once), the fetch on the wire whose entries are not in ``pending`` yet, and the delivery
    running now (which the watchdog may interrupt)."""

    def __init__(self, consumer: Consumer, lease: Lease) -> None:
        self.consumer = consumer
        self.lease = lease
        self.lock = threading.Lock()
        self.pending: deque[tuple[str, bytes]] = deque()
        #: The tags of a fetch sent but not moved into ``pending`` yet.
        self.ahead: Reservation | None = None
        #: (tag, entry, monotonic start) of the delivery being handled.
        self.current: tuple[str, bytes, float] | None = None
        self.thread_id: int | None = None
        self.interrupted_at: float | None = None
        self.abandoned = False
        #: Its thread's signs of life, read by the keeper (:mod:`.liveness`).
        self.pulse = Pulse()

    def take_all(self) -> list[str]:
        """The tags to give back: unstarted ones, oldest first, then every tag the fetch
        on the wire may take (release skips those it did not; FIFO order is kept)."""
        with self.lock:
            tags = [tag for tag, _ in self.pending]
            self.pending.clear()
            if self.ahead is not None:
                tags += self.ahead.tags()
                self.ahead = None
        return tags

    def overdue(self, now: float) -> str | None:
        """ "interrupt" or "abandon" when the running handler is past its limit, else None."""
        limit = self.consumer.options.time_limit
        current = self.current
        if limit is None or current is None or self.abandoned:
            return None
        if self.interrupted_at is None:
            return "interrupt" if now - current[2] > limit else None
        return "abandon" if now - self.interrupted_at > ABANDON_AFTER else None


def interrupt(thread_id: int) -> bool:
    """Raise TimeLimitExceeded in a thread at its next bytecode."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(TimeLimitExceeded)
    )
    return bool(done == 1)


def watch(runner: Runner) -> None:
    """The watchdog thread: interrupt handlers past their time limit; abandon the ones
    that do not stop (and start a new thread in their place)."""
    while not runner._halt.wait(0.05):
        now = time.monotonic()
        for slot in list(runner._slots):
            action = slot.overdue(now)
            if action == "interrupt" and slot.thread_id is not None:
                with slot.lock:  # see Runner._run_batch: never while it finishes one
                    if slot.current is None:
                        continue
                    slot.interrupted_at = now
                    interrupt(slot.thread_id)
                log.warning(
                    "queue %s: handler ran past its time limit (%.1fs); interrupting it",
                    slot.consumer.name,
                    slot.consumer.options.time_limit,
                )
            elif action == "abandon":
                _abandon(runner, slot)


def _abandon(runner: Runner, slot: Slot) -> None:
    with slot.lock:
        slot.abandoned = True
    log.error(
        "queue %s: handler did not stop after its time limit (blocked in C code?); "
        "abandoning its thread and starting a new one",
        slot.consumer.name,
    )
    runner._give_up(
        slot, TimeLimitExceeded("the handler did not stop; its thread was abandoned")
    )
    runner._slots.remove(slot)
    runner._threads = [t for t in runner._threads if t is not slot.pulse.thread]
    if not runner._stopping.is_set():
        runner._start_slot(Slot(slot.consumer, slot.lease), len(runner._slots))
