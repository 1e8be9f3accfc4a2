"""Async consumers of queues: a fetched batch's coroutines, started and settled.

The fetching thread (:mod:`redrelay.worker.runner`) hands each batch here. It checks each
delivery with :func:`~redrelay.worker.dispatch.begin`, hands the handlers to the
event loop as many at a time as permits of the consumer's
:class:`~redrelay.worker.aioloop.Bounded` are free, in **one** hand-off (a thread
hand-off per message made a no-op ``async def`` consumer ten times slower than a plain
one), and settles each outcome (:func:`~redrelay.worker.dispatch.settle`) and acks on
the fetching thread as the coroutines finish, collected in batches too. With
``concurrency=1`` a run of first deliveries goes as one chain. Unstarted deliveries stay
in the slot, so ``stop()`` gives them back at once, as for threads.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from ..handlers import acall_handler
from ..protocol.envelope import MAGIC
from .aioloop import Bounded, Ended, Future, ended
from .dispatch import Outcome, Started, begin, finish, settle

if TYPE_CHECKING:
    from ..handlers import Consumer
    from .leases import Batch, Lease
    from .runner import Runner
    from .timelimit import Slot

__all__ = ["finish_async", "run_async_batch"]


def run_async_batch(
    runner: Runner,
    consumer: Consumer,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    bounded: Bounded,
    acks: list[str],
) -> None:
    """Start a fetched batch of an async consumer; collect acks in ``acks`` (as
    ``Runner._run_batch`` does for threads).

    After a full batch, returns once it has started and there are permits enough for
    another batch of its size, so the thread fetches the next batch while these
    coroutines run (it settles them as they end, between starts and fetches); after a
    partial batch, or an empty fetch (:func:`finish_async`), or when the thread stops,
    it waits for them all. With ``concurrency=1`` it returns when the batch is done.
    """
    # The fetcher already put the batch in slot.pending (and passed crash point "fetch").
    run = _runs.get(slot)
    if run is None:
        run = _runs[slot] = _AsyncBatch(runner, consumer, lease, bounded, acks)
    run.acks = acks
    try:
        _start_all(runner, lease, slot, batch, bounded, run)
        # A full batch: more is queued, fetch it while these run. A partial one: the
        # queue ran dry, settle these first (an empty fetch would only wait).
        full = len(batch.tags) >= consumer.options.prefetch
        room = max(0, bounded.limit - len(batch.tags)) if full else 0
        while len(run.running) > room and not runner._halt.is_set():
            slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
            run.harvest(0.05)
        run.harvest(0)
    except BaseException:
        # The consumer loop fails the delivery in slot.current and gives back the rest:
        # what runs is settled, never left in flight under a live lease.
        finish_async(runner, slot)
        raise
    _count(runner, run)
    if runner._stopping.is_set():
        finish_async(runner, slot)


def finish_async(runner: Runner, slot: Slot) -> None:
    """Wait for (and settle) the coroutines a consumer thread still runs: when it stops."""
    run = _runs.pop(slot, None)
    if run is None:
        return
    while run.running and not runner._halt.is_set():
        slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
        run.harvest(0.05)
    run.harvest(0)
    _count(runner, run)


def _count(runner: Runner, run: _AsyncBatch) -> None:
    with runner._outcome_lock:
        for outcome, n in run.counts.items():
            runner.outcomes[outcome] += n
    run.counts = dict.fromkeys(Outcome, 0)


#: The coroutines in flight of each async consumer thread (its slot), across batches.
_runs: weakref.WeakKeyDictionary[Slot, _AsyncBatch] = weakref.WeakKeyDictionary()


def _start_all(
    runner: Runner,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    bounded: Bounded,
    run: _AsyncBatch,
) -> None:
    """Start the batch's coroutines as permits come free (as many at once as there are
    free permits, in one hand-off), settling finished ones between."""
    while True:
        slot.pulse.tick()
        with slot.lock:
            if not slot.pending or runner._stopping.is_set():
                return
            if not lease.current(batch):
                slot.pending.clear()  # taken over: these are back in the queue already
                return
            wanted = len(slot.pending)
        if not bounded.acquire(timeout=0.05):
            run.harvest(0)
            continue
        chain = bounded.limit == 1
        permits = 1 if chain else 1 + bounded.acquire_more(wanted - 1)
        with slot.lock:
            items = _take(slot, permits, chain)
        for _ in range(permits - len(items)):
            bounded.release()  # stop() gave some back meanwhile
        if not items:
            return
        ready: list[tuple[str, Coroutine[Any, Any, Any]]] = []
        for tag, entry in items:
            with slot.lock:  # _give_up() fails it if begin() raises
                slot.current = (tag, entry, time.monotonic())
            coro = run.prepare(tag, entry)
            if coro is not None:
                ready.append((tag, coro))
            with slot.lock:  # the watchdog reads it under the lock (see Runner._watch)
                slot.current = None
        if ready and chain:
            bounded.submit_chain(ready, run.ended, functools.partial(_claim, slot))
        elif ready:
            bounded.submit_many(ready, run.ended)
        elif chain:
            bounded.release()
        run.harvest(0)


def _take(slot: Slot, count: int, chain: bool) -> list[tuple[str, bytes]]:
    """Up to ``count`` pending deliveries, taken out of the slot; for a chain
    (``concurrency=1``), the run of first deliveries at the front, left in the slot
    until each starts (:func:`_claim`: ``stop()`` still gives back what has not), or
    one redelivery, taken: it is marked as started when checked (mark.lua), so it is
    checked just before it runs, never ahead of others."""
    pending = slot.pending
    if not chain:
        return [pending.popleft() for _ in range(min(count, len(pending)))]
    if not pending:
        return []
    if not pending[0][1].startswith(_FIRST_DELIVERY):
        return [pending.popleft()]
    items = []
    for item in pending:
        if not item[1].startswith(_FIRST_DELIVERY):
            break
        items.append(item)
    return items


def _claim(slot: Slot, tag: str) -> bool:
    """On the loop thread: take ``tag`` out of the slot as it starts; False if it is no
    longer there (given back by ``stop()``, or dropped with a lost lease)."""
    with slot.lock:
        pending = slot.pending
        if pending and pending[0][0] == tag:
            pending.popleft()
            return True
        return False


#: The header of an entry never delivered before (deliveries 0): begin() marks nothing.
_FIRST_DELIVERY = MAGIC + b"0:"

#: Seconds between ack flushes while a batch's coroutines finish (as for threads).
_ACK_INTERVAL = 0.05


class _AsyncBatch:
    """The coroutines of one batch in flight, and what became of the finished ones."""

    def __init__(
        self,
        runner: Runner,
        consumer: Consumer,
        lease: Lease,
        bounded: Bounded,
        acks: list[str],
    ) -> None:
        self.runner = runner
        self.consumer = consumer
        self.lease = lease
        self.bounded = bounded
        self.acks = acks
        self.running: dict[str, tuple[str, bytes, Started]] = {}
        #: Finished tasks, appended by the loop thread; ``wake`` is set when one lands.
        self.finished: collections.deque[
            tuple[str, asyncio.Task[Any] | Ended | None]
        ] = collections.deque()
        self.wake = threading.Event()
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.flushed = time.monotonic()

    def prepare(self, tag: str, entry: bytes) -> Coroutine[Any, Any, Any] | None:
        """Check one delivery (a permit is held for it): its handler's coroutine, or
        None when it must not run (the permit is given back, the outcome counted)."""
        runner, consumer = self.runner, self.consumer
        try:
            started = begin(
                runner.relay, consumer, self.lease, tag, entry, runner._halt
            )
        except BaseException:
            self.bounded.release()  # the consumer loop handles the error; keep the permit
            raise
        if isinstance(started, Outcome):
            self.bounded.release()
            self.counts[started] += 1
            if started is Outcome.ACKED:  # cancelled before it ran (result_ttl=)
                self.acks.append(tag)
            return None
        crash_point("handler")
        self.running[tag] = (tag, entry, started)
        return acall_handler(
            consumer.handler,
            started.message,
            runner.relay.handler_contexts,
            consumer.options.time_limit,
        )

    def ended(self, tag: str, task: asyncio.Task[Any] | Ended | None) -> None:
        """On the loop thread: a task finished (settled by the fetching thread), or
        None: a chained delivery that did not start (the worker is stopping)."""
        self.finished.append((tag, task))
        if not self.wake.is_set():
            self.wake.set()

    def harvest(self, wait: float) -> None:
        """Settle the coroutines that ended (waiting up to ``wait`` for one)."""
        if self.running:
            if wait and not self.finished:
                self.wake.wait(wait)
            self.wake.clear()
            finished = self.finished
            while finished:
                tag, task = finished.popleft()
                self._settle(tag, task)
        now = time.monotonic()
        if self.acks and now - self.flushed > _ACK_INTERVAL:
            self.runner._flush(self.lease, self.acks)
            self.acks.clear()
            self.flushed = now

    def _settle(self, tag: str, task: asyncio.Task[Any] | Ended | None) -> None:
        tag, entry, started = self.running.pop(tag)
        if task is None:  # never started: stop() gave it back, or the lease was lost
            return
        outcome = _outcome(
            self.runner, self.consumer, self.lease, tag, entry, started, task
        )
        if outcome is None:
            return  # cancelled at shutdown: it returns under the lease rule
        self.counts[outcome] += 1
        if outcome is Outcome.ACKED:
            self.acks.append(tag)


def _outcome(
    runner: Runner,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    started: Started,
    future: Future | asyncio.Task[Any] | Ended,
) -> Outcome | None:
    if future.cancelled():
        return None
    value, error = ended(future)
    if error is None:
        if lease.tracker is None:
            return Outcome.ACKED
        return finish(
            runner.relay, consumer, lease, tag, entry, started, value, runner._halt
        )
    return settle(
        runner.relay, consumer, lease, tag, entry, started, error, runner._halt
    )
