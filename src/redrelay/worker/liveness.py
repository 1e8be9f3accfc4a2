"""Liveness, not just life: a lease is renewed only while its threads make progress.

The keeper thread heartbeats leases whatever the handlers do, so that a slow handler is
not robbed (DESIGN §3.3). The other side of that rule: a consumer thread that died (an
exception the consumer loop did not foresee) or is stuck outside any handler must not
have its deliveries kept alive by the keeper forever (issue 18). Each consumer thread
therefore beats a :class:`Pulse` as it goes round its loop; the keeper reads them before
each heartbeat, and for a thread that is dead, or stuck for longer than its lease:

1. logs it at ERROR (with the exception that ended the thread, when there is one);
2. stops renewing what the thread held (queues: the consumer joins again under a fresh
   id and the old lease runs out; topics: the thread's own group lease is dropped), so
   its deliveries come back under the lease rule, with ``attempt + 1``;
3. starts a replacement thread, at most :data:`MAX_REVIVALS` times in
   :data:`REVIVAL_WINDOW` seconds per queue or group; past that, or if no thread can be
   started, the runner is *failed*: ``redrelay worker`` stops and exits with status
   :data:`EXIT_UNHEALTHY`, for its supervisor or platform to restart it.

Time in a handler is the handler's (its ``time_limit`` bounds it). Time waiting for
Redis is not "stuck" either: a thread counts as stuck only while the keeper's own
heartbeats got through for the whole window, and while the keeper itself ran on time (a
SIGSTOPped process or a paused VM makes every thread late at once: that is the lease
rule's business, not a stuck thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import RedrelayError

if TYPE_CHECKING:
    from .runner import Runner
    from .timelimit import Slot

__all__ = [
    "EXIT_UNHEALTHY",
    "MAX_REVIVALS",
    "REVIVAL_WINDOW",
    "Pulse",
    "Revivals",
    "check_threads",
    "keeper_was_late",
    "stuck_after",
    "waiting",
    "why",
]

log = logging.getLogger("redrelay.worker")

#: Replacement threads allowed per queue or topic group within REVIVAL_WINDOW seconds.
MAX_REVIVALS = 5
REVIVAL_WINDOW = 60.0
#: Seconds between two liveness checks past which the keeper itself was late (it checks
#: at least every second).
KEEPER_LATE = 2.0
#: Exit status of ``redrelay worker`` when it could not keep its consumers alive.
EXIT_UNHEALTHY = 3

#: Thread ident -> when it last tried Redis inside ``retry_forever`` (an outage is not
#: a stuck thread). Written only by each thread for itself.
_retrying: dict[int, float] = {}


def waiting(ident: int, since: float | None) -> None:
    """Record that thread ``ident`` is retrying a Redis call (None: it is done)."""
    if since is None:
        _retrying.pop(ident, None)
    else:
        _retrying[ident] = since


class Pulse:
    """One consumer thread's signs of life."""

    __slots__ = ("beat", "busy", "error", "thread")

    def __init__(self) -> None:
        #: Monotonic time of the last step of the consumer loop.
        self.beat = time.monotonic()
        #: In a handler (its own time, bounded by ``time_limit``), not in the loop.
        self.busy = False
        #: What ended the thread, when something did.
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def name(self) -> str:
        return self.thread.name if self.thread is not None else "?"

    def tick(self) -> None:
        self.beat = time.monotonic()

    def verdict(self, now: float, limit: float, reachable_since: float) -> str | None:
        """What became of the thread: "died", "stuck" (no step for ``limit`` seconds while Redis was reachable),
        or None while the thread is fine."""
        thread = self.thread
        if thread is None:
            return None
        if not thread.is_alive():
            return "died"
        if self.busy:
            return None
        last = max(self.beat, reachable_since, _retrying.get(thread.ident or 0, 0.0))
        return "stuck" if now - last > limit else None


def stuck_after(lease: float, poll: float) -> float:
    """Seconds without a step of its loop after which a thread is stuck: its lease, but
    never less than two blocking waits for an empty queue (``poll``) and a second."""
    return max(lease, 2 * poll + 1.0)


class Revivals:
    """Counts replacement threads per name within a sliding window."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def allow(self, name: str) -> bool:
        """Record a revival of ``name``; False when it came too often to go on."""
        now = time.monotonic()
        times = self._times.setdefault(name, deque())
        while times and now - times[0] > REVIVAL_WINDOW:
            times.popleft()
        times.append(now)
        return len(times) <= MAX_REVIVALS


def keeper_was_late(last: float, now: float) -> bool:
    """Whether the keeper itself missed its rounds (the process was stopped, the VM
    paused, the GIL held): then no thread is judged on that gap."""
    return now - last > KEEPER_LATE


def check_threads(runner: Runner) -> None:
    """The keeper's liveness check of every consumer thread (before its heartbeats)."""
    try:
        _check_threads(runner)
    except Exception:  # the keeper must go on: it renews every lease
        log.exception("liveness check failed")


def _check_threads(runner: Runner) -> None:
    now = time.monotonic()
    if keeper_was_late(runner._last_check, now):
        runner._reachable_since = now
    runner._last_check = now
    if runner._stopping.is_set():
        return
    for slot in list(runner._slots):
        limit = stuck_after(slot.consumer.options.lease, runner.poll)
        verdict = slot.pulse.verdict(now, limit, runner._reachable_since)
        if verdict is not None:
            _revive(runner, slot, verdict)


def _revive(runner: Runner, slot: Slot, verdict: str) -> None:
    """Stop renewing what a dead or stuck consumer thread holds; start another."""
    consumer, pulse = slot.consumer, slot.pulse
    name, lease = consumer.name, consumer.options.lease
    error = pulse.error if verdict == "died" else None
    log.error(
        "queue %s: consumer thread %s %s; what it held returns to the queue when its "
        "lease runs out (%gs); starting a new thread",
        name, pulse.name(), why(verdict, lease, error), lease,
        exc_info=error,
    )  # fmt: skip
    with slot.lock:
        slot.abandoned = True  # a stuck thread that wakes up leaves at once
    try:
        runner._slots.remove(slot)
    except ValueError:  # the time-limit watchdog abandoned it meanwhile
        return
    runner._threads = [t for t in runner._threads if t is not pulse.thread]
    try:
        # A fresh consumer id: the old lease is no longer renewed and runs out, and the
        # sweep hands its deliveries back with attempt + 1 (the lease rule).
        slot.lease.join()
    except RedrelayError as exc:
        log.warning("queue %s: could not join again (%s); retrying", name, exc)
    if not runner._revivals.allow(name):
        runner.give_up(
            f"queue {name}: consumer threads ended {MAX_REVIVALS + 1} times within "
            f"{REVIVAL_WINDOW:g}s"
        )
        return
    try:
        runner._start_slot(type(slot)(consumer, slot.lease), len(runner._slots))
    except RuntimeError as exc:  # "can't start new thread"
        runner.give_up(f"queue {name}: cannot start a new thread ({exc})")


def why(verdict: str, lease: float, error: BaseException | None) -> str:
    if verdict != "died":
        return f"made no progress for longer than its lease ({lease:g}s): stuck"
    if error is None:
        return "died"
    return f"died ({type(error).__name__}: {error})"
