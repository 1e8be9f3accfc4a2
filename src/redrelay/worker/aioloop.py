"""Async handlers: one event loop thread per worker, and batches that run on it.

Sync handlers run on their consumer threads, one message at a time per thread. An
``async def`` handler with ``concurrency=50`` runs up to 50 coroutines at once on **one**
loop thread (:class:`LoopThread`), not on 50 threads.

The fetch, lease, ack and retry code is the sync one, on the consumer's fetching
thread: :func:`run_async_batch` takes a fetched batch, checks each delivery with
:func:`~redrelay.worker.dispatch.begin`, hands the handler call to the loop
(``run_coroutine_threadsafe``) when a permit of the consumer's :class:`Bounded` is free,
and settles each outcome (:func:`~redrelay.worker.dispatch.settle`) and acks on the
fetching thread as the coroutines finish. Unstarted deliveries stay in the slot, so
``stop()`` gives them back at once, as for threads. The loop only runs handlers; it
does no Redis I/O of redrelay's own. Channel subscribers use the same loop and
:class:`Bounded` (see :mod:`redrelay.listener`).

Time limits: ``asyncio.timeout`` around each coroutine (:func:`~redrelay.handlers.ainvoke`),
so a coroutine past its limit is cancelled at its next ``await`` and fails with
:class:`TimeLimitExceeded`. A coroutine that blocks the loop (a sync call inside
``async def``) stalls every coroutine of the process, as in any asyncio program.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from ..handlers import Called, acall_handler
from .dispatch import Outcome, Started, begin, finish, settle

if TYPE_CHECKING:
    from ..handlers import Consumer
    from ..topic import TopicSubscription
    from .leases import Batch, Lease
    from .runner import Runner
    from .timelimit import Slot

__all__ = [
    "Bounded",
    "LoopThread",
    "ended",
    "error_of",
    "fetchers",
    "run_async_batch",
]

log = logging.getLogger("redrelay.worker")

Future = concurrent.futures.Future[Any]


class LoopThread:
    """An event loop running on a thread of its own, for coroutines sent from others.

    Stopping it cancels what still runs and shuts down async generators (which closes
    the loop's ``redis.asyncio`` clients, see :mod:`redrelay.io.aio`).
    """

    def __init__(self, name: str = "redrelay-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            gather = asyncio.gather(*tasks, return_exceptions=True)
            self.loop.run_until_complete(gather)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future:
        """Run ``coro`` on the loop; a future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling what still runs) and join its thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


class Bounded:
    """At most ``limit`` coroutines of one handler in flight on a :class:`LoopThread`."""

    def __init__(self, aio: LoopThread, limit: int) -> None:
        self.aio = aio
        self.limit = limit
        self._permits = threading.Semaphore(limit)

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a free permit (the caller then must :meth:`submit` or :meth:`release`)."""
        return self._permits.acquire(timeout=timeout)

    def release(self) -> None:
        self._permits.release()

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Future], None] | None = None,
    ) -> Future:
        """Run ``coro`` under an acquired permit; the permit returns when it ends."""
        future = self.aio.submit(coro)

        def done(fut: Future) -> None:
            self._permits.release()
            if on_done is not None:
                on_done(fut)

        future.add_done_callback(done)
        return future

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight (or ``timeout``); True if nothing is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        taken = 0
        try:
            while taken < self.limit:
                left = (
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                )
                if not self._permits.acquire(timeout=left):
                    return False
                taken += 1
            return True
        finally:
            for _ in range(taken):
                self._permits.release()


def ended(future: Future) -> Called:
    """What a finished (not cancelled) :func:`~redrelay.handlers.acall_handler`
    coroutine came to: (value, None), or (None, any ``BaseException`` the handler
    raised, ``SystemExit`` included, with its class and traceback)."""
    error = future.exception()
    if error is not None:
        return None, error
    called: Called = future.result()
    return called


def error_of(future: Future) -> BaseException | None:
    """What a finished (not cancelled) handler coroutine failed with, else None."""
    return ended(future)[1]


def fetchers(consumer: Consumer | TopicSubscription) -> int:
    """Fetching threads of a consumer or topic subscriber: ``concurrency`` for sync
    handlers; for async ones, enough batches to fill ``concurrency`` coroutines, plus
    one fetching while another waits on the tail of its batch."""
    opts = consumer.options
    if not consumer.is_async:
        return opts.concurrency
    if opts.concurrency == 1:
        return 1
    return math.ceil(opts.concurrency / opts.prefetch) + 1


def run_async_batch(
    runner: Runner,
    consumer: Consumer,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    bounded: Bounded,
    acks: list[str],
) -> None:
    """Handle a fetched batch of an async consumer; collect acks in ``acks`` (as
    ``Runner._run_batch`` does for threads)."""
    # The fetcher already put the batch in slot.pending (and passed crash point "fetch").
    run = _AsyncBatch(runner, consumer, lease, bounded, acks)
    try:
        _start_all(runner, lease, slot, batch, bounded, run)
    finally:
        # Even after an unexpected error (the consumer loop then fails the delivery in
        # slot.current and gives back the rest): what runs is settled, never left in
        # flight under a live lease.
        while run.running and not runner._halt.is_set():
            slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
            run.harvest(0.05)
        with runner._outcome_lock:
            for outcome, n in run.counts.items():
                runner.outcomes[outcome] += n


def _start_all(
    runner: Runner,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    bounded: Bounded,
    run: _AsyncBatch,
) -> None:
    """Start the batch's coroutines as permits come free, settling finished ones."""
    while True:
        slot.pulse.tick()
        with slot.lock:
            if not slot.pending or runner._stopping.is_set():
                return
            if not lease.current(batch):
                slot.pending.clear()  # taken over: these are back in the queue already
                return
        if not bounded.acquire(timeout=0.05):
            run.harvest(0)
            continue
        with slot.lock:
            item = slot.pending.popleft() if slot.pending else None
            if item is not None:  # _give_up() fails it if begin() raises
                slot.current = (*item, time.monotonic())
        if item is None:
            bounded.release()  # stop() gave them back meanwhile
            return
        run.start(*item)
        with slot.lock:  # the watchdog reads it under the lock (see Runner._watch)
            slot.current = None
        run.harvest(0)


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
        self.running: dict[Future, tuple[str, bytes, Started]] = {}
        self.done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.flushed = time.monotonic()

    def start(self, tag: str, entry: bytes) -> None:
        """Check one delivery and send its handler to the loop (a permit is held)."""
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
            return
        crash_point("handler")
        coro = acall_handler(
            consumer.handler,
            started.message,
            runner.relay.handler_contexts,
            consumer.options.time_limit,
        )
        # The loop thread reports each end on ``done``: harvesting costs O(1) per
        # coroutine, not a scan of every running future.
        self.running[self.bounded.submit(coro, self.done.put)] = (tag, entry, started)

    def harvest(self, wait: float) -> None:
        """Settle the coroutines that ended (waiting up to ``wait`` for one)."""
        if self.running:
            try:
                future = self.done.get(timeout=wait) if wait else self.done.get_nowait()
            except queue.Empty:
                future = None
            while future is not None:
                self._settle(future)
                try:
                    future = self.done.get_nowait()
                except queue.Empty:
                    future = None
        now = time.monotonic()
        if self.acks and now - self.flushed > _ACK_INTERVAL:
            self.runner._flush(self.lease, self.acks)
            self.acks.clear()
            self.flushed = now

    def _settle(self, future: Future) -> None:
        tag, entry, started = self.running.pop(future)
        outcome = _outcome(
            self.runner, self.consumer, self.lease, tag, entry, started, future
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
    future: Future,
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
