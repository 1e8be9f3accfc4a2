"""Runs consumers (threads that fetch, handle and ack) and subscribers in one process.

Each consumer thread fetches a batch (``prefetch``) under its queue's lease, runs the
handler on each entry in turn on that same thread (no hand-off per message), and acks in
batches riding on the next fetch. While handlers are quick, that fetch goes out before the
batch in hand runs (``fetcher.py``), so Redis and Python work at once. A separate keeper
thread heartbeats every lease and recovers expired consumers' deliveries. ``redrelay
worker``, ``relay.start()`` and ``relay.drain()`` all run this code. ``async def``
handlers run as coroutines on one event loop thread, fed by the same fetching threads
(:mod:`redrelay.worker.aioloop`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from .._logs import outage
from ..errors import (
    BrokerUnavailable,
    ConfigurationError,
    RedrelayError,
)
from ..handlers import Consumer
from . import fastpath
from .aiobatch import finish_async, run_async_batch
from .aioloop import Bounded, LoopThread, fetchers
from .dispatch import Outcome, fail_delivery, handle_entry
from .epoch import EpochWatch
from .fetcher import Fetcher
from .leases import Batch, Lease, retry_forever
from .liveness import Revivals, check_threads
from .periodic import Scheduler
from .results import settle_batch, start_batch, track
from .sharded import new_lease
from .timelimit import Slot, watch
from .topics import TopicRunner

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..listener import Listener
    from ..relay import Relay

__all__ = ["Runner"]

log = logging.getLogger("redrelay.worker")

#: Longest blocking wait on an empty queue (bounds delayed-promotion lateness and stop latency).
MAX_WAIT = 0.5
#: Seconds between sweeps for expired leases.
SWEEP_INTERVAL = 1.0
#: Acks are flushed when this many are pending or this many seconds passed.
#: ACK_BATCH is above the largest prefetch, so acks normally ride on the next fetch.
ACK_BATCH, ACK_INTERVAL = 1000, 0.05
_ACKED = Outcome.ACKED


class Runner:
    """The consumers and subscribers of one relay, on threads of this process."""

    def __init__(
        self,
        relay: Relay,
        *,
        queues: Iterable[str] | None = None,
        subscribers: bool = True,
        concurrency: int | None = None,
        poll: float = MAX_WAIT,
        topics: bool | None = None,
        scheduler: bool = False,
    ) -> None:
        self.relay = relay
        self.consumers = _select(relay, queues, concurrency)
        self.with_subscribers = subscribers and bool(relay.subscribers)
        # Topic subscribers are durable work, not channel listeners: they run unless
        # only some queues were asked for (``redrelay worker -q ...``).
        run_topics = queues is None if topics is None else topics
        self.topics = (
            TopicRunner(relay, poll=poll)
            if run_topics and relay.topic_subscribers
            else None
        )
        if self.topics is not None:
            self.topics.give_up = self.give_up
        #: Fires the relay's schedules (every worker runs one; see worker/periodic.py).
        self.scheduler = (
            Scheduler(relay) if scheduler and len(relay.schedules) else None
        )
        self.poll = poll
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._outcome_lock = threading.Lock()
        self._stopping = threading.Event()
        self._halt = threading.Event()
        self.started = threading.Event()  #: set when start() returned
        self._threads: list[threading.Thread] = []
        self._slots: list[Slot] = []
        self._leases: dict[str, Lease] = {}
        self._keeper: threading.Thread | None = None
        self._listener: Listener | None = None
        self._conn: Connection | None = None
        #: The event loop of async handlers, and each async consumer's bound.
        self._aio: LoopThread | None = None
        self._bounded: dict[str, Bounded] = {}
        #: Why this runner could not keep its consumers alive (then ``redrelay
        #: worker`` exits non-zero, see :mod:`.liveness`); None while it can.
        self.failed: str | None = None
        self._revivals = Revivals()
        #: Monotonic time of the keeper's last failed heartbeat (see :mod:`.liveness`).
        self._reachable_since = self._last_check = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Join every lease, then start consumer threads, the keeper and the listener."""
        if not (
            self.consumers or self.with_subscribers or self.topics or self.scheduler
        ):
            raise ConfigurationError(
                "nothing to run: no consumers, subscribers or schedules are registered "
                "on this relay"
            )
        self._conn = conn = self.relay.new_connection(
            socket_timeout=max(10.0, self.poll + 5)
        )
        self.epoch = EpochWatch(conn, self.relay.namespace)
        retry_forever(self.epoch.check, self._stopping, "data-loss check")
        if (
            any(c.is_async for c in self.consumers)
            or (
                self.with_subscribers
                and any(s.is_async for s in self.relay.subscribers)
            )
            or (self.topics is not None and self.topics.is_async)
        ):
            self._aio = LoopThread()
            self._aio.start()
        for consumer in self.consumers:
            # Until Redis answers, or until asked to stop (then BrokerUnavailable is raised).
            # Registering reads the shard count: a mismatch raises ConfigurationError.
            lease = retry_forever(
                lambda c=consumer: new_lease(conn, c.queue, c.options),
                self._stopping,
                f"queue {consumer.name}: register",
            )
            retry_forever(lease.join, self._stopping, f"queue {consumer.name}: join")
            retry_forever(  # reads the cancels and loads complete.lua
                lambda c=consumer, lease=lease: track(
                    lease, self.relay.codec, c.options.result_ttl, c.name
                ),
                self._stopping,
                f"queue {consumer.name}: results",
            )
            self._leases[consumer.name] = lease
            if consumer.is_async and self._aio is not None:
                limit = consumer.options.concurrency
                self._bounded[consumer.name] = Bounded(self._aio, limit)
            for n in range(fetchers(consumer)):
                self._start_slot(Slot(consumer, lease), n)
        if self.consumers:
            self._keeper = self._spawn("redrelay-keeper", self._keep)
        if any(c.options.time_limit is not None for c in self.consumers):
            self._spawn("redrelay-watchdog", watch, self)
        if self.with_subscribers:
            from ..listener import Listener

            self._listener = Listener(self.relay, self.relay.subscribers, aio=self._aio)
            self._listener.start()
        if self.topics is not None:
            self.topics.start(self._aio)
        if self.scheduler is not None:
            self.scheduler.start()
        self.started.set()

    def _start_slot(self, slot: Slot, n: int) -> None:
        name = f"redrelay-{slot.consumer.name}-{n}"
        slot.pulse.thread = self._spawn(
            name, self._consume, slot.consumer, slot.lease, slot
        )
        self._slots.append(slot)

    def _spawn(self, name: str, target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        if name not in ("redrelay-keeper", "redrelay-watchdog"):
            self._threads.append(thread)
        return thread

    def request_stop(self) -> None:
        """Ask every loop to stop fetching (safe from a signal handler); ``stop()`` finishes."""
        self._stopping.set()
        if self.topics is not None:
            self.topics.request_stop()
        if self.scheduler is not None:
            self.scheduler.request_stop()

    def stop(self, grace: float = 10.0) -> bool:
        """Stop fetching, give back unstarted deliveries at once, let running handlers finish.

        Returns True if everything finished within ``grace`` seconds. Otherwise the handlers
        still running keep their deliveries, which go back to the queue when the lease
        expires (heartbeats stop here), exactly as if the process had died.
        """
        self._stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        self._give_back_unstarted()
        deadline = time.monotonic() + grace
        if self.topics is not None:
            self.topics.request_stop()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        clean = not any(t.is_alive() for t in self._threads)
        if self.topics is not None:
            clean = self.topics.stop(max(0.0, deadline - time.monotonic())) and clean
        self._halt.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
        self._leave(clean, grace)
        if self._listener is not None:
            self._listener.stop()
        if self._aio is not None and clean:
            self._aio.stop()
        if self._conn is not None and clean:
            self._conn.close()
        return clean

    def _give_back_unstarted(self) -> None:
        for slot in self._slots:
            tags = slot.take_all()
            if tags:
                try:
                    slot.lease.release(tags)
                except RedrelayError as exc:
                    log.warning(
                        "could not give back %d deliveries (%s); they return after the lease",
                        len(tags),
                        exc,
                    )

    def _leave(self, clean: bool, grace: float) -> None:
        """Leave every queue when all handlers finished; else their leases expire."""
        if not clean:
            running = sum(t.is_alive() for t in self._threads)
            log.warning(
                "%d handlers still running after the %.1fs grace period; their messages return to the "
                "queue when the lease expires",
                running,
                grace,
            )
            return
        for name, lease in self._leases.items():
            try:
                lease.leave()
            except RedrelayError as exc:
                log.warning(
                    "queue %s: could not leave cleanly (%s); the lease will expire",
                    name,
                    exc,
                )

    # -- consumer threads ------------------------------------------------------------------

    def _consume(self, consumer: Consumer, lease: Lease, slot: Slot) -> None:
        slot.thread_id = threading.get_ident()
        try:
            self._consume_loop(consumer, lease, slot)
        except BaseException as exc:  # noqa: B036 - the keeper logs and replaces it
            # Not re-raised: threading would print it a second time (or, for
            # SystemExit, end the thread silently). The keeper sees the thread gone.
            slot.pulse.error = exc
        finally:
            slot.thread_id = None  # nothing left for the watchdog to interrupt

    def _consume_loop(self, consumer: Consumer, lease: Lease, slot: Slot) -> None:
        bounded = self._bounded.get(consumer.name)
        acks: list[str] = []  # handled; sent with the next fetch
        fetcher = Fetcher(lease, slot, self._stopping, self.poll, self._note_rejected)
        fast = fastpath.eligible(self, consumer, lease)
        pulse = slot.pulse
        while not self._stopping.is_set() and not slot.abandoned:
            pulse.tick()
            try:
                batch = fetcher.next(acks)
                if batch is not None:
                    if lease.tracker is None:
                        fetcher.send_ahead(batch, acks)
                    else:  # result_ttl=: the acks go in the complete call, after the
                        # fetch, so that Redis answers the fetch first (results.py)
                        fetcher.send_ahead(batch, [])
                        start_batch(self, lease, batch, acks)
                    started = time.monotonic()
                    if bounded is not None:
                        run_async_batch(
                            self, consumer, lease, slot, batch, bounded, acks
                        )
                    elif fast:
                        fastpath.run_batch(
                            self, consumer, lease, slot, batch, acks,
                            ACK_BATCH, ACK_INTERVAL,
                        )  # fmt: skip
                    else:
                        self._run_batch(consumer, lease, slot, batch, acks)
                    fetcher.ran(batch, time.monotonic() - started)
                elif bounded is not None:
                    finish_async(self, slot)  # nothing more came: settle the rest
            except BrokerUnavailable:
                # Logged. The same fetch goes out again (same tags and acks): the lost
                # call may have run, and fetch.lua then hands back what it took.
                continue
            except Exception as exc:
                # A consumer thread must not die, nor sit on what it holds while its
                # lease lives on: fail the running delivery, give back the rest.
                pulse.busy = False
                log.exception(
                    "queue %s: unexpected error in the consumer loop", consumer.name
                )
                fetcher.settle()
                self._give_up(slot, exc)
                self._stopping.wait(1.0)
        finish_async(self, slot)  # async: the coroutines still running end first
        acks = fetcher.close(acks)
        if not slot.abandoned:
            self._flush(lease, acks)

    def _run_batch(
        self,
        consumer: Consumer,
        lease: Lease,
        slot: Slot,
        batch: Batch,
        acks: list[str],
    ) -> None:
        """Handle the batch in ``slot.pending``; collect the acks in ``acks`` (they go
        with the next fetch, or sooner when handlers are slow, so a long batch does not
        sit on finished work)."""
        acked, others = 0, []
        flushed = time.monotonic()
        timed = consumer.options.time_limit is not None
        lock, pending, stopping = slot.lock, slot.pending, self._stopping
        relay, halt, pulse = self.relay, self._halt, slot.pulse
        while True:
            with lock:
                if not pending or stopping.is_set():
                    break
                if not lease.current(batch):
                    # The lease was taken over: these entries are already back in the queue.
                    pending.clear()
                    break
                tag, entry = pending.popleft()
                # The start time only matters to the watchdog (time limits).
                slot.current = (tag, entry, time.monotonic() if timed else 0.0)
                slot.interrupted_at = None
            pulse.busy = True  # the handler's own time (time_limit bounds it)
            outcome = handle_entry(relay, consumer, lease, tag, entry, None, halt, slot)
            pulse.busy = False
            pulse.beat = time.monotonic()
            # Under the lock the watchdog interrupts under: a TimeLimitExceeded that lands
            # here finds slot.current still set, and _give_up() retries the delivery (at
            # worst it runs again; it is never left in flight with a live lease).
            with lock:
                if slot.abandoned:
                    return  # the watchdog failed this delivery and gave back the rest
                if outcome is _ACKED:
                    acks.append(tag)
                slot.current = None
            if outcome is _ACKED:
                acked += 1
                now = time.monotonic()
                if len(acks) >= ACK_BATCH or now - flushed > ACK_INTERVAL:
                    self._flush(lease, acks)
                    acks.clear()
                    flushed = now
            else:
                others.append(outcome)
        self._count_all(acked, others)

    def _count_all(self, acked: int, others: list[Outcome]) -> None:
        with self._outcome_lock:
            self.outcomes[_ACKED] += acked
            for outcome in others:
                self.outcomes[outcome] += 1

    def _flush(self, lease: Lease, acks: list[str]) -> None:
        settle_batch(self, lease, acks)  # result_ttl=: a complete call in flight
        if acks:
            crash_point("ack")
            held = retry_forever(
                lambda: lease.ack(acks), self._halt, f"queue {lease.keys.name}: ack"
            )
            self._note_rejected(lease, len(acks) - held)

    def _note_rejected(self, lease: Lease, rejected: int) -> None:
        if rejected > 0:
            self._count(Outcome.REJECTED, rejected)
            log.warning(
                "queue %s: %d acks rejected: this consumer's lease was taken over, so another consumer "
                "owns those deliveries now",
                lease.keys.name,
                rejected,
            )

    def _give_up(self, slot: Slot, exc: BaseException) -> None:
        """Fail the delivery a slot is running and give back its unstarted ones."""
        current, slot.current = slot.current, None
        try:
            if current is not None:
                tag, entry, _ = current
                outcome = fail_delivery(
                    self.relay, slot.consumer, slot.lease, tag, entry, exc, self._halt
                )
                self._count(outcome)
            slot.lease.release(slot.take_all())
        except RedrelayError as error:
            log.warning(
                "could not give back deliveries (%s); they return after the lease",
                error,
            )

    def _count(self, outcome: Outcome, n: int = 1) -> None:
        with self._outcome_lock:
            self.outcomes[outcome] += n

    # -- keeper: heartbeats and recovery ---------------------------------------------------

    def _keep(self) -> None:
        beat = min(lease.options.heartbeat for lease in self._leases.values())
        next_sweep = 0.0
        while not self._halt.wait(min(beat, SWEEP_INTERVAL)):
            try:
                self.epoch.check()
            except RedrelayError as exc:
                outage.warning("epoch", "data-loss check failed (%s); retrying", exc)
            check_threads(self)  # first: a dead or stuck thread's lease is not renewed
            for name, lease in self._leases.items():
                try:
                    lease.heartbeat()
                    if time.monotonic() >= next_sweep:
                        lease.recover()
                except RedrelayError as exc:
                    self._reachable_since = time.monotonic()
                    outage.warning(
                        f"beat {name}",
                        "queue %s: heartbeat failed (%s); retrying",
                        name,
                        exc,
                    )
                except Exception:  # the keeper must not die: it is every lease's life
                    log.exception("queue %s: heartbeat failed", name)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_INTERVAL

    def give_up(self, reason: str) -> None:
        """Mark this runner failed: ``redrelay worker`` stops and exits non-zero."""
        log.critical(
            "%s; this worker cannot keep its consumers alive: stopping", reason
        )
        self.failed = reason
        self.request_stop()

    def pending(self) -> int:
        """Deliveries fetched by this runner and not yet started."""
        return sum(len(slot.pending) for slot in self._slots)


def _select(
    relay: Relay, queues: Iterable[str] | None, concurrency: int | None
) -> list[Consumer]:
    if queues is None:
        chosen = list(relay.consumers.values())
    else:
        chosen = []
        for name in queues:
            if name not in relay.consumers:
                known = ", ".join(sorted(relay.consumers)) or "none"
                raise ConfigurationError(
                    f"no consumer is registered for queue {name!r} (registered: {known})"
                )
            chosen.append(relay.consumers[name])
    if concurrency is not None:
        chosen = [
            dataclasses.replace(
                c, options=dataclasses.replace(c.options, concurrency=concurrency)
            )
            for c in chosen
        ]
    return chosen
