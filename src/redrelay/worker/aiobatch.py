"""Async consumers of queues: a fetched batch's coroutines, started and settled.

The fetching thread (:mod:`redrelay.worker.runner`) hands each batch here. It checks each
delivery with :func:`~redrelay.worker.dispatch.begin` and hands the handlers to the
event loop in **one** hand-off per batch (a thread hand-off per message made a no-op
``async def`` consumer ten times slower than a plain one), ahead of free permits: the
loop keeps them in the consumer's :class:`~redrelay.worker.aioloop.Bounded` backlog and
starts each where the previous one ended, so a slot never waits for a thread to wake
up. The thread settles each outcome (:func:`~redrelay.worker.dispatch.settle`) and acks
as the coroutines finish, collected in batches too. With ``concurrency=1`` they run as
one chain (no task per message), and plain first deliveries run inline, a run of them
per coroutine (:mod:`.aioinline`). Unstarted deliveries stay in the slot until they
start, so ``stop()`` gives them back at once, as for threads.

How far the thread runs ahead: it hands a batch over once the one before it has all
started (at most one batch per thread waits for the loop). When one batch can fill
every permit (``concurrency <= prefetch``, e.g. the default 1) it waits for the batch to
end before fetching again, so the next fetch carries its acks (a fetch that finds the
queue empty blocks for up to the poll interval, and acks held over it would sit in
flight). With more permits than a batch it fetches the next batch at once while
handlers are quick (the last run all started within 50 ms), or once this one has all
started while they are slow, so no second batch waits behind slow handlers.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from ..errors import DecodeError
from ..handlers import acall_handler
from ..message import Message, make_message
from ..observers import aplan
from ..protocol.envelope import MAGIC, fresh_envelope, is_fresh_json
from .aioinline import (
    END,
    Failed,
    acall_bare,
    admit,
    ignore,
    run_inline,
    settle_inline,
)
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
    """Hand a fetched batch of an async consumer to the loop; collect acks in ``acks``
    (as ``Runner._run_batch`` does for threads).

    Returns once the batch is handed over (while handlers are quick) or has all started
    (the last ones may still run) and, when its end leaves this thread no room under the
    limit (``concurrency <= prefetch``), once it has ended: the thread then fetches the
    next batch, settling what still runs between fetches. After a partial batch, or an
    empty fetch (:func:`finish_async`), or when the thread stops, it waits for them all.
    """
    # The fetcher already put the batch in slot.pending (and passed crash point "fetch").
    run = _runs.get(slot)
    if run is None:
        run = _runs[slot] = _AsyncBatch(runner, consumer, lease, slot, bounded, acks)
    run.acks = acks
    try:
        n = len(batch.tags)
        # What came before this batch starts first: at most one batch waits per thread.
        _wait_started(runner, slot, run, n)
        quick = run.quick()  # how the run before this batch went
        _feed_all(runner, lease, slot, batch, bounded, run)
        if not quick:
            # Slow handlers: no second batch behind these (stop() gives them back).
            _wait_started(runner, slot, run, 0)
        # Then fetch the next batch while these end, if their end leaves this thread
        # room enough under the limit; else settle them first: the next fetch carries
        # their acks (a fetch that finds the queue empty waits for up to the poll
        # interval: acks held over it would sit in flight). A partial batch: the queue
        # ran dry, settle these first too.
        room = max(0, bounded.limit - n) if n >= consumer.options.prefetch else 0
        while run.busy() > room and not runner._halt.is_set():
            slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
            run.harvest(0.05, need=run.busy() - room)
        run.harvest(0)
    except BaseException:
        # The consumer loop fails the delivery in slot.current and gives back the rest:
        # what runs is settled, never left in flight under a live lease.
        finish_async(runner, slot)
        raise
    _count(runner, run)
    if runner._stopping.is_set():
        finish_async(runner, slot)


def _wait_started(runner: Runner, slot: Slot, run: _AsyncBatch, left: int) -> None:
    """Wait until no more than ``left`` deliveries of the slot are still to start."""
    while len(slot.pending) > left and not runner._stopping.is_set():
        slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
        run.harvest(0.05, below=left)


def finish_async(runner: Runner, slot: Slot) -> None:
    """Wait for (and settle) the coroutines a consumer thread still runs: when it stops."""
    run = _runs.pop(slot, None)
    if run is None:
        return
    while run.busy() and not runner._halt.is_set():
        slot.pulse.tick()  # waiting on its coroutines is progress (liveness.py)
        run.harvest(0.05, need=run.busy())
    run.harvest(0)
    _count(runner, run)


def _count(runner: Runner, run: _AsyncBatch) -> None:
    with runner._outcome_lock:
        for outcome, n in run.counts.items():
            runner.outcomes[outcome] += n
    run.counts = dict.fromkeys(Outcome, 0)


#: The coroutines in flight of each async consumer thread (its slot), across batches.
_runs: weakref.WeakKeyDictionary[Slot, _AsyncBatch] = weakref.WeakKeyDictionary()


def _feed_all(
    runner: Runner,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    bounded: Bounded,
    run: _AsyncBatch,
) -> None:
    """Check the batch's deliveries and hand their coroutines to the loop: each run of
    first deliveries in one hand-off (:meth:`Bounded.feed`), ahead of free permits;
    they stay in ``slot.pending`` until they start (:meth:`_AsyncBatch.claim`). A
    redelivery is marked as started when checked (mark.lua), so it is checked only
    when it can start at once: once what came before it started, under a permit."""
    items = list(zip(batch.tags, batch.entries, strict=True))
    i, n = 0, len(items)
    # Plain deliveries of a chain run inline, a run of them per coroutine (aioinline.py).
    # (with the relay's instruments in one wrapper of the handler: observers.aplan)
    planned = aplan(run.consumer.handler, runner.relay.handler_contexts)
    inline = (
        run.plain
        and bounded.limit == 1
        and planned is not None
        and run.consumer.options.time_limit is None
    )
    while i < n:
        if runner._stopping.is_set():
            return  # stop() gave back the rest
        if not lease.current(batch):
            with slot.lock:
                slot.pending.clear()  # taken over: these are back in the queue already
            return
        if inline and is_fresh_json(items[i][1]):
            j = i + 1
            while j < n and is_fresh_json(items[j][1]):
                j += 1
            run.runs += 1
            run.fed_at, run.last_fed = time.monotonic(), items[j - 1][0]
            assert planned is not None
            inline_run = run_inline(run, items[i:j], planned)
            bounded.feed([(items[i][0], inline_run)], ignore, admit)
            i = j
        elif items[i][1].startswith(_FIRST_DELIVERY):
            j = i + 1
            while (
                j < n
                and items[j][1].startswith(_FIRST_DELIVERY)
                and not (inline and is_fresh_json(items[j][1]))
            ):
                j += 1
            ready = []
            for tag, entry in items[i:j]:
                coro = run.prepare(tag, entry)
                if coro is not None:
                    ready.append((tag, coro))
            if ready:
                run.fed_at, run.last_fed = time.monotonic(), ready[-1][0]
                bounded.feed(ready, run.ended, run.claim)
            i = j
        else:
            _start_redelivery(runner, slot, bounded, run, *items[i])
            i += 1


def _start_redelivery(
    runner: Runner,
    slot: Slot,
    bounded: Bounded,
    run: _AsyncBatch,
    tag: str,
    entry: bytes,
) -> None:
    """Start one redelivery under a permit once what came before it started."""
    while True:
        slot.pulse.tick()
        with slot.lock:
            pending = slot.pending
            if not pending or runner._stopping.is_set():
                return  # given back
            if pending[0][0] == tag:
                break
        run.harvest(0.05, ends=True)
    while not bounded.acquire(timeout=0.05):
        slot.pulse.tick()
        run.harvest(0)
        if runner._stopping.is_set():
            return
    with slot.lock:
        if not slot.pending or slot.pending[0][0] != tag:
            bounded.release()  # stop() gave it back meanwhile
            return
        slot.pending.popleft()
    coro = run.prepare(tag, entry, held=True)
    if coro is not None:
        bounded.start(tag, coro, run.ended)


def _drop(
    pending: collections.deque[tuple[str, bytes]], tag: str, entry: bytes
) -> None:
    """Take a delivery that will not start out of the slot (rare: it is not at the front)."""
    try:
        pending.remove((tag, entry))
    except ValueError:
        pass  # given back meanwhile


#: The header of an entry never delivered before (deliveries 0): begin() marks nothing.
_FIRST_DELIVERY = MAGIC + b"0:"

#: A fed run of deliveries that all started within this many seconds (the fetcher's
#: AHEAD_WITHIN) lets the thread go and fetch the next batch while it runs.
_AHEAD_WITHIN = 0.05

#: Seconds between ack flushes while a batch's coroutines finish (as for threads).
_ACK_INTERVAL = 0.05


class _AsyncBatch:
    """The coroutines of one batch in flight, and what became of the finished ones."""

    def __init__(
        self,
        runner: Runner,
        consumer: Consumer,
        lease: Lease,
        slot: Slot,
        bounded: Bounded,
        acks: list[str],
    ) -> None:
        self.runner = runner
        self.slot = slot
        self.consumer = consumer
        self.lease = lease
        self.bounded = bounded
        self.acks = acks
        #: tag -> (tag, entry, what begin() gave, or the Message of a first delivery).
        self.running: dict[str, tuple[str, bytes, Started | Message]] = {}
        #: First deliveries need no begin(): no signing key, no results to keep.
        self.plain = (
            runner.relay.signing_key is None
            and lease.tracker is None
            and consumer.options.max_deliveries >= 1
        )
        #: Finished tasks, appended by the loop thread; ``wake`` is set when one lands.
        self.finished: collections.deque[
            tuple[str, asyncio.Task[Any] | Ended | Failed | None]
        ] = collections.deque()
        #: Inline runs fed and not ended (aioinline.py), and the tags of their handlers
        #: that returned (appended by the loop thread, taken by this one).
        self.runs = 0
        self.acked: list[str] = []
        self.wake = threading.Event()
        #: The fetching thread waits for a coroutine to end (else only for the slot's
        #: fed deliveries to have all started, or for the ack interval).
        self.waiting = False
        #: ... or for no more than this many deliveries of the slot still to start.
        self.below = -1
        #: ... or for this many outcomes in ``finished`` (woken once, not per coroutine).
        self.need = 0
        #: When the last run of deliveries was fed, its last tag, and when that started:
        #: handlers are quick when a run started within _AHEAD_WITHIN (see quick()).
        self.fed_at, self.started_at = 0.0, -1.0  # the first batch: not known quick
        self.last_fed = ""
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.flushed = time.monotonic()

    def prepare(
        self, tag: str, entry: bytes, held: bool = False
    ) -> Coroutine[Any, Any, Any] | None:
        """Check one delivery (in ``slot.pending`` unless ``held``: then taken out, and a
        permit held for it): its handler's coroutine, or None when it must not run (it
        leaves the slot, a held permit is given back, the outcome counted)."""
        runner, consumer, slot = self.runner, self.consumer, self.slot
        if self.plain and not held:
            # The hot path (as worker/fastpath.py for threads): a first delivery of an
            # unsigned JSON entry, no result to keep: begin() would only build this.
            try:
                env = fresh_envelope(entry)
            except DecodeError:
                env = None  # begin() dead-letters it, with the reason
            if env is not None:
                message = make_message(
                    env["i"], env["b"], env.get("h") or {}, consumer.name, None, 1,
                    0, env.get("t", 0) / 1000, None, False, tag,
                )  # fmt: skip
                crash_point("handler")
                self.running[tag] = (tag, entry, message)
                contexts = runner.relay.handler_contexts
                if contexts or consumer.options.time_limit is not None:
                    return acall_handler(
                        consumer.handler, message, contexts, consumer.options.time_limit
                    )
                return acall_bare(consumer.handler, message)
        try:
            started = begin(
                runner.relay, consumer, self.lease, tag, entry, runner._halt
            )
        except BaseException:
            # The consumer loop fails the delivery in slot.current (_give_up) and gives
            # back the rest; keep the permit.
            with slot.lock:
                _drop(slot.pending, tag, entry)
                slot.current = (tag, entry, time.monotonic())
            if held:
                self.bounded.release()
            raise
        if isinstance(started, Outcome):
            if held:
                self.bounded.release()
            else:
                with slot.lock:
                    _drop(slot.pending, tag, entry)
            self.counts[started] += 1
            if started is Outcome.ACKED:  # cancelled before it ran (result_ttl=)
                self.acks.append(tag)
            return None
        crash_point("handler")
        self.running[tag] = (tag, entry, started)
        contexts, limit = runner.relay.handler_contexts, consumer.options.time_limit
        if contexts or limit is not None:
            return acall_handler(consumer.handler, started.message, contexts, limit)
        return acall_bare(consumer.handler, started.message)

    def busy(self) -> int:
        """Deliveries fed and not settled yet (an inline run counts as one)."""
        return len(self.running) + self.runs

    def quick(self) -> bool:
        """Whether the last fed run had all started within _AHEAD_WITHIN: then the
        thread fetches the next batch while it runs, as the sync fetcher does."""
        return 0 <= self.started_at - self.fed_at < _AHEAD_WITHIN

    def claim(self, tag: str) -> bool:
        """On the loop thread: take ``tag`` out of the slot as it starts; False if it is
        no longer there (given back by ``stop()``, or dropped with a lost lease)."""
        slot = self.slot
        with slot.lock:
            pending = slot.pending
            if pending and pending[0][0] == tag:
                pending.popleft()
                if tag == self.last_fed:
                    self.started_at = time.monotonic()
                if (
                    self.waiting or len(pending) <= self.below
                ) and not self.wake.is_set():
                    self.wake.set()  # the fetching thread waits for this
                return True
            return False

    def ended(self, tag: str, task: asyncio.Task[Any] | Ended | None) -> None:
        """On the loop thread: a task finished (settled by the fetching thread), or
        None: a chained delivery that did not start (the worker is stopping)."""
        self.finished.append((tag, task))
        self.nudge()

    def nudge(self) -> None:
        """On the loop thread, after an outcome landed: wake the thread if it waits for it."""
        if (
            self.waiting or 0 < self.need <= len(self.finished)
        ) and not self.wake.is_set():
            self.wake.set()

    def harvest(
        self, wait: float, ends: bool = False, below: int = -1, need: int = 0
    ) -> None:
        """Settle the coroutines that ended, waiting up to ``wait`` for one to start
        or end (``ends``), for no more than ``below`` deliveries of the slot to be
        still to start, or for ``need`` outcomes (an inline run's counts as one)."""
        if wait and len(self.finished) < max(1, need):
            self.waiting, self.below, self.need = ends, below, need
            if not (self.finished if ends else need and len(self.finished) >= need):
                self.wake.wait(wait)
            self.waiting, self.below, self.need = False, -1, 0
        self.wake.clear()
        finished, running, acks = self.finished, self.running, self.acks
        plain = self.lease.tracker is None
        acked = 0
        if self.acked:
            # Appended by the loop meanwhile: only ever at the end, so these stay put.
            done = len(self.acked)
            acks.extend(self.acked[:done])
            del self.acked[:done]
            acked += done
        while finished:
            tag, task = finished.popleft()
            if isinstance(task, Failed):
                if task is END:
                    self.runs -= 1
                else:
                    settle_inline(self, tag, task)
            # The hot path: a handler that returned, no result to keep.
            elif plain and task is not None and _returned(task):
                del running[tag]
                acks.append(tag)
                acked += 1
            else:
                self._settle(tag, task)
        if acked:
            self.counts[Outcome.ACKED] += acked
        now = time.monotonic()
        if self.acks and now - self.flushed > _ACK_INTERVAL:
            self.runner._flush(self.lease, self.acks)
            self.acks.clear()
            self.flushed = now

    def _settle(self, tag: str, task: asyncio.Task[Any] | Ended | None) -> None:
        tag, entry, started = self.running.pop(tag)
        if task is None:  # never started: stop() gave it back, or the lease was lost
            return
        if not isinstance(started, Started):  # the hot path's: a first delivery
            started = Started(started, 0)
        outcome = _outcome(
            self.runner, self.consumer, self.lease, tag, entry, started, task
        )
        if outcome is None:
            return  # cancelled at shutdown: it returns under the lease rule
        self.counts[outcome] += 1
        if outcome is Outcome.ACKED:
            self.acks.append(tag)


def _returned(task: asyncio.Task[Any] | Ended) -> bool:
    """Whether a finished handler coroutine returned (did not raise, was not cancelled)."""
    if type(task) is Ended:
        return task.called[1] is None
    return (
        not task.cancelled() and task.exception() is None and task.result()[1] is None
    )


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
