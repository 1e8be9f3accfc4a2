"""Async handlers: one event loop thread per worker, and batches that run on it.

Sync handlers run on their consumer threads, one message at a time per thread. An
``async def`` handler with ``concurrency=50`` runs up to 50 coroutines at once on **one**
loop thread (:class:`LoopThread`), not on 50 threads.

The fetch, lease, ack and retry code is the sync one, on the consumer's fetching
thread: :func:`run_async_batch` takes a fetched batch, checks each delivery with
:func:`~redrelay.worker.dispatch.begin`, hands the handler calls to the loop as many at
a time as permits of the consumer's :class:`Bounded` are free (**one** wake-up of the
loop for all of them, :meth:`Bounded.submit_many`, not one per message: a thread
hand-off per message made a no-op ``async def`` consumer ten times slower than a plain
one), and settles each outcome (:func:`~redrelay.worker.dispatch.settle`) and acks on
the fetching thread as the coroutines finish, collected in batches too. Unstarted deliveries stay in the slot, so
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
import collections
import concurrent.futures
import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from ..handlers import ainvoke
from ..protocol.envelope import MAGIC
from .dispatch import Outcome, Started, begin, settle

if TYPE_CHECKING:
    from ..handlers import Consumer
    from ..topic import TopicSubscription
    from .leases import Batch, Lease
    from .runner import Runner
    from .timelimit import Slot

__all__ = [
    "Bounded",
    "LoopThread",
    "error_of",
    "fetchers",
    "finish_async",
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

    def acquire_more(self, count: int) -> int:
        """Take up to ``count`` more free permits without waiting; how many were taken."""
        taken = 0
        while taken < count and self._permits.acquire(blocking=False):
            taken += 1
        return taken

    def submit_many(
        self,
        items: list[tuple[str, Coroutine[Any, Any, Any]]],
        on_done: Callable[[str, asyncio.Task[Any]], None],
    ) -> None:
        """Run each ``(key, coro)`` as a task under an acquired permit, all handed to the
        loop in one call; ``on_done(key, task)`` runs on the loop thread as each ends."""
        loop, permits = self.aio.loop, self._permits

        def done(key: str, task: asyncio.Task[Any]) -> None:
            permits.release()
            on_done(key, task)

        def spawn() -> None:
            for key, coro in items:
                task = loop.create_task(coro)
                task.add_done_callback(functools.partial(done, key))

        loop.call_soon_threadsafe(spawn)

    def submit_chain(
        self,
        items: list[tuple[str, Coroutine[Any, Any, Any]]],
        on_done: Callable[[str, Ended | None], None],
        claim: Callable[[str], bool],
    ) -> None:
        """Run the ``(key, coro)`` one after the other under one acquired permit, in one
        task handed to the loop in one call: ``concurrency=1`` without a thread hand-off
        (nor a task, nor a turn of the loop) per message; the handlers share the chain's
        context, as a thread's handlers share the thread's. Each starts only if
        ``claim(key)`` (its delivery is still unstarted, not given back meanwhile); else
        ``on_done(key, None)``."""
        loop, permits = self.aio.loop, self._permits

        async def chain() -> None:
            me = asyncio.current_task()
            pending = iter(items)
            try:
                for key, coro in pending:
                    if not claim(key):
                        coro.close()
                        on_done(key, None)
                        continue
                    try:
                        await coro
                    except asyncio.CancelledError:
                        if _cancelling(me):
                            raise  # the chain itself was cancelled (shutdown)
                        on_done(key, Ended(RuntimeError("the handler was cancelled")))
                    except (
                        BaseException
                    ) as exc:  # ainvoke turned SystemExit & co. into errors
                        on_done(key, Ended(exc))
                    else:
                        on_done(key, Ended(None))
            finally:
                for _, coro in pending:  # cancelled at shutdown: never started
                    coro.close()
                permits.release()

        loop.call_soon_threadsafe(loop.create_task, chain())

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


class Ended:
    """A handler of a chain that ended: what it raised (None: it returned)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self.error


def _cancelling(task: asyncio.Task[Any] | None) -> bool:
    """Whether ``task`` itself is being cancelled (Python < 3.11 cannot tell: yes)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def error_of(future: Future | asyncio.Task[Any] | Ended) -> Exception | None:
    """What a finished (not cancelled) handler coroutine raised, as an Exception: a
    BaseException (CancelledError inside the handler, say) fails its delivery too."""
    error = future.exception()
    if error is None or isinstance(error, Exception):
        return error
    return RuntimeError(f"the handler raised {type(error).__name__}: {error}")


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
            return None
        crash_point("handler")
        self.running[tag] = (tag, entry, started)
        return ainvoke(
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
    error = error_of(future)
    if error is None:
        return Outcome.ACKED
    return settle(
        runner.relay, consumer, lease, tag, entry, started, error, runner._halt
    )
