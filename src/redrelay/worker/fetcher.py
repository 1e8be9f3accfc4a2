"""One consumer thread's fetches, the next one sent before the batch in hand runs.

A fetch is one round trip (fetch.lua: ack the last batch, take the next). Sent and then
waited for, it leaves Python idle while Redis works and Redis idle while Python runs the
batch: a quarter to a half of a draining consumer's time (py-spy). So once handlers prove quick (a full batch
ran in under :data:`AHEAD_WITHIN`), the thread sends fetch N+1, carrying batch N-1's acks,
*before* it runs batch N, and reads its reply afterwards. The slot then holds at most two
batches (2 x prefetch deliveries) for the time of one quick batch; slow handlers get no
second batch.

Nothing changes for the invariants: the fetch on the wire has its tags reserved, and the
slot shows them (``Slot.ahead``), so ``stop()`` and the watchdog give back what it took
along with the unstarted deliveries; a lost reply is sent again under the same tags (and
fetch.lua hands back what the lost call took); on the way out the thread reads the reply
and gives back the whole batch. One case is weaker: if ``stop()`` gives back the tags
before the fetch reaches Redis (a window of microseconds) and a handler then overruns the
grace period, that batch stays in flight until the lease expires, as if the process had
died (the consumer thread gives it back itself whenever it gets to leave).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .._faults import crash_point
from .._logs import outage
from ..errors import BrokerUnavailable, RedrelayError
from .leases import Batch, Fetch, Held, Lease
from .timelimit import Slot

__all__ = ["AHEAD_WITHIN", "Fetcher"]

log = logging.getLogger("redrelay.worker")

#: The next fetch goes out before a full batch runs when the last batch took less.
AHEAD_WITHIN = 0.05
#: An adaptive batch (``prefetch`` left unset) doubles up to this while full batches run
#: within AHEAD_WITHIN, and halves (down to 1) while a batch takes longer than SLOW_BATCH.
AUTO_MAX, SLOW_BATCH = 400, 0.5


class Fetcher:
    """Fetches for one slot (one consumer thread); only that thread calls it."""

    def __init__(
        self,
        lease: Lease,
        slot: Slot,
        stopping: threading.Event,
        poll: float,
        on_rejected: Callable[[Lease, int], None],
    ) -> None:
        self.lease, self.slot = lease, slot
        options = slot.consumer.options
        #: Under a concurrency limit, a thread takes one delivery per fetch and none ahead:
        #: every slot taken is a handler running, not an entry waiting behind another on
        #: the same thread (coroutines start a whole batch at once: they keep prefetch).
        self.capped = bool(options.limits.concurrency) and not slot.consumer.is_async
        self.prefetch = 1 if self.capped else options.prefetch
        # Coroutines: a batch returns as soon as it started, so its time says nothing,
        # unless they run one at a time (aiobatch.py: a slow run is waited for).
        self.auto = (
            options.prefetch_auto
            and not self.capped
            and (not slot.consumer.is_async or options.concurrency == 1)
        )
        self.stopping, self.poll = stopping, poll
        self.on_rejected = on_rejected
        #: Sent and not read yet, or to be sent again after a lost reply.
        self.call: Fetch | None = None
        #: The last batch ran within AHEAD_WITHIN.
        self.quick = False
        #: The queue was empty: the next fetch waits this long in Redis (see _wait).
        self.wait_first: float | None = None

    def next(self, acks: list[str]) -> Batch | None:
        """Send ``acks`` (emptied) and read the next batch into ``slot.pending``; None when
        the queue is empty (the next call then waits for an entry: see :meth:`_wait`)
        or the lease was lost.

        Raises BrokerUnavailable (logged, after a pause) when Redis is away: the same fetch
        goes out again on the next call.
        """
        wait, self.wait_first = self.wait_first, None
        if self.call is None:
            self.call = self._new(acks)
            if wait is not None and not self.call.acks:
                try:
                    self._send(self.call, wait)
                except BrokerUnavailable:
                    pass  # sent again (without the wait), and the outage logged, below
        got = self._receive(self.call)
        self.call = None
        if isinstance(got, Batch):
            return got
        if got is None:
            self.lease.heartbeat()
        elif acks:  # the fetch sent ahead came back empty: send the acks first
            pass
        elif isinstance(got, Held):  # a flow limit: the list is not empty, so sleep
            self.stopping.wait(min(self.poll, got))
        else:
            self._wait(got)
        return None

    def ran(self, batch: Batch, seconds: float) -> None:
        """Note how long ``batch`` took: decides the next fetch ahead and, for an
        adaptive batch size, the size of the next fetches (one round trip per batch
        pays off over more quick messages; slow ones should not queue on one thread)."""
        self.quick = seconds < AHEAD_WITHIN
        if not self.auto:
            return
        if self.quick and len(batch.tags) >= self.prefetch:
            self.prefetch = min(AUTO_MAX, self.prefetch * 2)
        elif seconds > SLOW_BATCH and self.prefetch > 1:
            self.prefetch = max(1, self.prefetch // 2)

    def send_ahead(self, batch: Batch, acks: list[str]) -> None:
        """Before running ``batch``: send the next fetch (with ``acks``, emptied) if
        handlers are quick and the batch was full (an empty queue needs no second one)."""
        if (
            not self.quick
            or self.capped
            or len(batch.tags) < self.prefetch
            or self.call is not None
        ):
            return
        self.call = self._new(acks)
        try:
            self._send(self.call)
        except BrokerUnavailable:
            pass  # sent again, and the outage logged, by the next call to next()

    def settle(self) -> None:
        """Read the reply of a fetch on the wire (its entries join ``slot.pending``, for
        the caller to give back). If the reply is lost, the fetch is sent again later."""
        call = self.call
        if call is None or call.reply is None:
            return
        try:
            self._receive(call)
        except RedrelayError:
            return
        self.call = None

    def close(self, acks: list[str]) -> list[str]:
        """On the way out: read a fetch still on the wire and give back every unstarted
        delivery (``stop()`` gave back most already). Returns the acks still to send."""
        back: list[str] = []
        call = self.call
        if call is not None:
            self.settle()
            if self.call is not None:  # its reply was lost: send its acks again
                acks = call.acks + acks
            back = call.reservation.tags()
            self.call = None
        back = list(dict.fromkeys(self.slot.take_all() + back))
        try:
            self.lease.release(back)
        except RedrelayError as exc:
            log.warning(
                "could not give back %d deliveries (%s); they return after the lease",
                len(back),
                exc,
            )
        return acks

    # -- internals -------------------------------------------------------------------------

    def _new(self, acks: list[str]) -> Fetch:
        if acks and getattr(self.lease, "tracker", None) is not None:
            # Results are written by their ack (complete.lua), never by fetch.lua.
            crash_point("ack")
            self.on_rejected(self.lease, len(acks) - self.lease.ack(acks))
            acks.clear()
        call = Fetch(self.lease.reserve(self.prefetch), acks[:])
        acks.clear()
        return call

    def _send(self, call: Fetch, wait: float | None = None) -> None:
        if call.acks:
            crash_point("ack")
        slot = self.slot
        # Before and after (the lease may renew the tags): stop() and the watchdog give
        # back whatever this fetch takes.
        with slot.lock:
            slot.ahead = call.reservation
        try:
            self.lease.send_fetch(call, wait)
        finally:
            with slot.lock:
                slot.ahead = call.reservation

    def _receive(self, call: Fetch) -> Batch | float | None:
        lease, slot = self.lease, self.slot
        try:
            if call.reply is None:
                self._send(call)
            held, got = lease.receive(call)
        except BrokerUnavailable as exc:
            name = slot.consumer.name
            outage.warning(
                f"fetch {name}", "queue %s: Redis unavailable (%s); retrying", name, exc
            )
            self.stopping.wait(1.0)
            raise
        self.on_rejected(lease, len(call.acks) - held)
        if isinstance(got, Batch):
            crash_point("fetch")
        with slot.lock:
            slot.ahead = None
            if isinstance(got, Batch):
                slot.pending.extend(zip(got.tags, got.entries, strict=True))
        return got

    def _wait(self, due: float) -> None:
        """Wait until an entry is ready, the next delayed one is due (``due`` seconds;
        -1: none) or the poll interval passes.

        On a plain queue the wait rides in front of the next fetch, which the next call
        of :meth:`next` sends (after the consumer loop settled what still ran, and saw
        no stop; not with acks, which must not wait): it reads both, and the entry that
        ended the wait comes with it, one round trip after the put instead of two.
        Meanwhile the fetch counts as sent ahead (``slot.ahead``): ``stop()`` and
        :meth:`close` give back what it takes.
        """
        if due == 0:
            return
        # At least 10 ms: Redis 6.2 reads a timeout of "0.001" as 0, "block forever"
        # (and checks blocked clients' timeouts only every 100 ms anyway).
        wait = max(0.01, round(self.poll if due < 0 else min(self.poll, due), 3))
        if self.lease.waits_in_fetch:
            self.wait_first = wait
        else:
            self.lease.wait(wait)
