"""Runs topic subscribers: one consumer of its group per thread, leases, retries, recovery.

Each thread is a consumer of its topic's group (a stream consumer named by a fresh id)
holding a lease in the group's ``leases`` sorted set, kept alive by the keeper thread's
heartbeats, not by the handler. So a handler may run for 30 minutes without its entry
being taken (no idle-time reclaim); a consumer that stops heartbeating for longer than
its lease loses everything it holds back to the group (``topic_recover.lua``) within a
sweep. An entry's owner in the stream's pending list is the lease token: acks, retries
and dead-letterings from a consumer that lost its lease are rejected and counted.

An ``async def`` subscriber runs as coroutines on the worker's shared event loop
(:class:`~redrelay.worker.aioloop.LoopThread`), up to ``concurrency`` at once per group
(:class:`~redrelay.worker.aioloop.Bounded`), fed by a few fetching threads
(:func:`~redrelay.worker.aioloop.fetchers`). Those threads check each delivery
(:func:`~redrelay.worker.topic_dispatch.begin`), and settle and ack each outcome as its
coroutine ends (:func:`~redrelay.worker.topic_dispatch.settle`): the very code sync
handlers run between, on their own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._logs import outage
from ..errors import BrokerUnavailable, RedrelayError
from ..handlers import call_handler
from .aioloop import Bounded, LoopThread, fetchers
from .dispatch import Outcome
from .fetcher import AHEAD_WITHIN
from .leases import retry_forever
from .liveness import (
    MAX_REVIVALS,
    REVIVAL_WINDOW,
    Pulse,
    Revivals,
    keeper_was_late,
    stuck_after,
    why,
)
from .topic_batch import run_batch
from .topic_dispatch import ACK_INTERVAL, Flight, Item, settle
from .topic_leases import (
    Ahead,
    Fetched,
    GroupLease,
    create_group,
    group_idle,
    receive_ahead,
    recover_expired,
    send_ahead,
)

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..message import Message
    from ..relay import Relay

__all__ = ["TopicRunner"]

log = logging.getLogger("redrelay.worker")

#: Seconds between sweeps for expired leases.
SWEEP_INTERVAL = 1.0


class TopicRunner:
    """The topic subscribers of one relay, on threads of this process."""

    def __init__(self, relay: Relay, *, poll: float = 0.5) -> None:
        self.relay = relay
        self.subs = list(relay.topic_subscribers)
        self.poll = poll
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._halt = threading.Event()
        # One entry per fetching thread, in step: a replaced thread (liveness.py)
        # takes its predecessor's index, with a lease of its own.
        self._threads: list[threading.Thread] = []
        self._leases: list[GroupLease] = []
        self._pulses: list[Pulse] = []
        self._bounded: dict[str, Bounded | None] = {}
        #: Called when a thread cannot be replaced (the worker then exits non-zero).
        self.give_up: Callable[[str], None] | None = None
        self._revivals = Revivals()
        self._reachable_since = self._last_check = time.monotonic()
        self._keeper: threading.Thread | None = None
        self._conn: Connection | None = None
        #: A loop of its own when started without the worker's (stopped with it).
        self._own_aio: LoopThread | None = None

    @property
    def is_async(self) -> bool:
        """Some subscriber is ``async def``: it needs an event loop thread."""
        return any(sub.is_async for sub in self.subs)

    def start(self, aio: LoopThread | None = None) -> None:
        """Create each group (at its start position), join, start threads and the keeper.

        ``aio`` is the worker's event loop thread, for ``async def`` subscribers.
        """
        self._conn = conn = self.relay.new_connection(
            socket_timeout=max(10.0, self.poll + 5)
        )
        if aio is None and self.is_async:
            aio = self._own_aio = LoopThread("redrelay-topics-asyncio")
            aio.start()
        for sub in self.subs:
            retry_forever(
                lambda s=sub: create_group(conn, s), self._stopping, f"topic {sub.name}"
            )
            retry_forever(sub.topic.register, self._stopping, f"topic {sub.name}")
            bounded = None
            if sub.is_async and aio is not None:
                bounded = Bounded(aio, sub.options.concurrency)
            self._bounded[sub.name] = bounded
            for _ in range(fetchers(sub)):
                lease = GroupLease(conn, sub)
                retry_forever(lease.join, self._stopping, f"topic {sub.name}: join")
                self._start_thread(lease, len(self._threads))
        if self.subs:
            self._keeper = threading.Thread(
                target=self._keep, name="redrelay-topic-keeper", daemon=True
            )
            self._keeper.start()

    def _start_thread(self, lease: GroupLease, i: int) -> None:
        """Start the fetching thread ``i`` (a new one, or the replacement of one)."""
        pulse = Pulse()
        pulse.thread = threading.Thread(
            target=self._consume,
            args=(lease, self._bounded.get(lease.sub.name), pulse),
            name=f"redrelay-topic-{lease.sub.name}-{i}",
            daemon=True,
        )
        pulse.thread.start()
        if i == len(self._threads):
            self._threads.append(pulse.thread)
            self._leases.append(lease)
            self._pulses.append(pulse)
        else:
            self._threads[i], self._leases[i], self._pulses[i] = (
                pulse.thread, lease, pulse,
            )  # fmt: skip

    def request_stop(self) -> None:
        self._stopping.set()

    def stop(self, grace: float = 10.0) -> bool:
        """Stop fetching, let running handlers finish within ``grace``, give back the rest.

        A thread still running after ``grace`` keeps its entries, which go back to the
        group when its lease expires (heartbeats stop here), as if the process had died.
        """
        self._stopping.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Before ``_halt``, which lets fetching threads return with coroutines running.
        alive = [thread.is_alive() for thread in self._threads]
        self._halt.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
        running = 0
        for lease, still in zip(self._leases, alive, strict=True):
            if still:
                running += 1
                continue
            try:
                lease.leave()
            except RedrelayError as exc:
                log.warning(
                    "topic %s: could not leave cleanly (%s)", lease.sub.name, exc
                )
        if running:
            log.warning(
                "%d topic handlers still running after the %.1fs grace period; their "
                "entries go back to their groups when the lease expires",
                running,
                grace,
            )
        else:
            if self._own_aio is not None:
                self._own_aio.stop()
            if self._conn is not None:
                self._conn.close()
        return not running

    def idle(self) -> bool:
        """Every group read to the end, nothing pending or waiting for a retry."""
        conn = self.relay.connection
        return all(group_idle(conn, sub) for sub in self.subs)

    def backlog(self) -> dict[str, dict[str, Any]]:
        """Each group's lag, pending and retrying entries (for DrainTimeout's message)."""
        out: dict[str, dict[str, Any]] = {}
        for sub in self.subs:
            for g in sub.topic.stats().groups:
                if g.group == sub.group:
                    out[sub.name] = {
                        "lag": g.lag,
                        "pending": g.pending,
                        "retrying": g.retrying,
                    }
        return out

    # -- threads ---------------------------------------------------------------------------

    def _consume(
        self, lease: GroupLease, bounded: Bounded | None, pulse: Pulse
    ) -> None:
        try:
            self._consume_loop(lease, bounded, pulse)
        except BaseException as exc:  # logged by the keeper, which replaces the thread
            pulse.error = exc

    def _consume_loop(
        self, lease: GroupLease, bounded: Bounded | None, pulse: Pulse
    ) -> None:
        sub = lease.sub
        prefetch = sub.options.prefetch
        acks: list[str] = []
        resync = quick = False
        ahead: Ahead | None = None
        while not self._stopping.is_set() and not lease.abandoned:
            pulse.tick()
            try:
                if ahead is None:
                    got = lease.fetch(prefetch, acks, resync)
                    sent = len(acks)
                    acks.clear()
                else:
                    call, ahead = ahead, None
                    got = receive_ahead(lease, call, acks)
                    sent = len(call.acks)
            except RedrelayError as exc:
                # Any RedrelayError (BrokerUnavailable is no BrokerError): the reply may be
                # lost, so resync (re-read what this consumer holds) and resend the acks.
                # NOGROUP: the stream was deleted.
                outage.warning(
                    f"fetch {sub.name}",
                    "topic %s: fetch failed (%s); retrying",
                    sub.name,
                    exc,
                )
                resync = True
                if "NOGROUP" in str(exc):
                    self._recreate(lease)
                self._stopping.wait(1.0)
                continue
            except Exception:
                log.exception("topic %s: unexpected error in fetch", sub.name)
                resync = True
                self._stopping.wait(1.0)
                continue
            self._report(lease, sent, got)
            resync = False
            if got.status == -1:
                retry_forever(lease.heartbeat, self._stopping, f"topic {sub.name}")
            elif got.status == 0:
                if not acks:  # (a fetch sent ahead came back empty: send them first)
                    self._wait(lease, got.wait)
            elif bounded is not None:
                self._run_async(lease, got.items, bounded, acks, pulse)
            else:
                if quick and len(got.items) >= prefetch:
                    ahead, resync = send_ahead(lease, prefetch, acks)
                began = time.monotonic()
                run_batch(self, lease, got.items, acks, pulse)
                quick = time.monotonic() - began < AHEAD_WITHIN
        self._settle_on_exit(lease, ahead, acks)

    def _settle_on_exit(
        self, lease: GroupLease, ahead: Ahead | None, acks: list[str]
    ) -> None:
        """Read a fetch sent ahead (what it took stays held: leave() gives it back, or
        the lease's expiry), then send the acks still owed."""
        if ahead is not None:
            try:
                got = receive_ahead(lease, ahead, acks)
                self._report(lease, len(ahead.acks), got)
            except Exception:
                pass
        if acks:
            name = lease.sub.name
            retry_forever(lambda: lease.ack(acks), self._halt, f"ack on {name}")

    def _recreate(self, lease: GroupLease) -> None:
        try:
            create_group(lease.conn, lease.sub)
            lease.join()
        except RedrelayError:
            pass

    def _wait(self, lease: GroupLease, due: float) -> None:
        wait = self.poll if due < 0 else min(self.poll, due)
        if wait <= 0:
            return
        try:
            lease.conn.call(
                "XREAD", "BLOCK", max(10, int(wait * 1000)), "COUNT", 1,
                "STREAMS", lease.stream, "$",
            )  # fmt: skip
        except BrokerUnavailable:
            self._stopping.wait(1.0)

    def _call(self, lease: GroupLease, entry: bytes, message: Message) -> Outcome:
        _, error = call_handler(lease.sub.handler, message, self.relay.handler_contexts)
        if error is None:
            return Outcome.ACKED
        return settle(self.relay, lease, entry, message, error, self._halt)

    def _done(
        self,
        lease: GroupLease,
        outcome: Outcome,
        sid: str,
        deliveries: int,
        acks: list[str],
        flushed: float,
    ) -> float:
        """Count an outcome and collect its ack; returns when acks were last sent."""
        with self._lock:
            self.outcomes[outcome] += 1
        if outcome is not Outcome.ACKED:
            return flushed
        acks.append(sid)
        now = time.monotonic()
        # A finished redelivery is acked at once: it is marked as started, and a crash
        # before its ack would count it against max_deliveries.
        if deliveries > 1 or now - flushed > ACK_INTERVAL:
            self._flush(lease, acks)
            return now
        return flushed

    def _count(self, acked: int, others: list[Outcome]) -> None:
        """Count a batch's outcomes (under the lock once, not per message)."""
        with self._lock:
            self.outcomes[Outcome.ACKED] += acked
            for outcome in others:
                self.outcomes[outcome] += 1

    def _flush(self, lease: GroupLease, acks: list[str]) -> None:
        if acks:
            held = retry_forever(
                lambda: lease.ack(acks), self._halt, f"ack on {lease.sub.name}"
            )
            self._rejected(lease, len(acks) - held)
            acks.clear()

    def _run_async(
        self,
        lease: GroupLease,
        items: list[Item],
        bounded: Bounded,
        acks: list[str],
        pulse: Pulse,
    ) -> None:
        """Start the batch's coroutines as permits come free; settle them as they end.

        Unstarted entries stay held, as on a thread: leave() gives them back on a
        graceful stop, the lease's expiry after a crash.
        """
        flight = Flight(self, lease, bounded, acks)
        cid = lease.consumer_id
        try:
            for item in items:
                pulse.tick()
                while not bounded.acquire(timeout=0.05):
                    pulse.tick()
                    flight.harvest(0)
                    if self._stopping.is_set():
                        return
                if self._stopping.is_set() or lease.consumer_id != cid:
                    bounded.release()
                    return
                flight.start(*item)
                flight.harvest(0)
        finally:
            # Even after an unexpected error: what runs is settled, never left in
            # flight under a live lease (unless stop() gave up waiting: ``_halt``).
            while flight.running and not self._halt.is_set():
                pulse.tick()
                flight.harvest(0.05)

    def _rejected(self, lease: GroupLease, n: int) -> None:
        if n > 0:
            with self._lock:
                self.outcomes[Outcome.REJECTED] += n
            log.warning(
                "topic %s: %d acks rejected: this consumer's lease was taken over",
                lease.sub.name,
                n,
            )

    def _report(self, lease: GroupLease, sent: int, got: Fetched) -> None:
        sub = lease.sub
        self._rejected(lease, sent - got.held)
        if got.trimmed_unread:
            many = (
                "an unknown number of" if got.trimmed_unread < 0 else got.trimmed_unread
            )
            log.warning(
                "topic %s: %s entries were trimmed from the stream before group %s read "
                "them (retention maxlen/max_age too short for this group's backlog); "
                "counted as trimmed_unread",
                sub.topic.name, many, sub.group,
            )  # fmt: skip
        if got.trimmed_pending:
            log.warning(
                "topic %s: %d entries group %s had read were trimmed before they were "
                "done; counted as trimmed_pending",
                sub.topic.name, got.trimmed_pending, sub.group,
            )  # fmt: skip

    def _keep(self) -> None:
        beat = min(s.options.heartbeat for s in self.subs)
        next_sweep = 0.0
        while not self._halt.wait(min(beat, SWEEP_INTERVAL)):
            try:
                self._check_threads()  # before the heartbeats, see liveness.py
            except Exception:
                log.exception("liveness check failed")
            for lease in list(self._leases):
                try:
                    lease.heartbeat()
                except RedrelayError as exc:
                    self._reachable_since = time.monotonic()
                    name = lease.sub.name
                    outage.warning(
                        f"beat {name}", "topic %s: heartbeat failed (%s)", name, exc
                    )
            if time.monotonic() < next_sweep:
                continue
            next_sweep = time.monotonic() + SWEEP_INTERVAL
            for sub in self.subs:
                try:
                    recover_expired(self._conn or self.relay.connection, sub)
                except RedrelayError as exc:
                    outage.warning(
                        f"sweep {sub.name}",
                        "topic %s: recovery sweep failed (%s)",
                        sub.name,
                        exc,
                    )

    # -- liveness (see liveness.py) --------------------------------------------------------

    def _check_threads(self) -> None:
        now = time.monotonic()
        if keeper_was_late(self._last_check, now):
            self._reachable_since = now
        self._last_check = now
        if self._stopping.is_set():
            return
        for i, pulse in enumerate(list(self._pulses)):
            lease = self._leases[i]
            limit = stuck_after(lease.sub.options.lease, self.poll)
            verdict = pulse.verdict(now, limit, self._reachable_since)
            if verdict is not None:
                self._revive(i, verdict)

    def _revive(self, i: int, verdict: str) -> None:
        """Drop a dead or stuck thread's lease (it runs out and the sweep hands its
        entries back to the group) and start a thread with a new one in its place."""
        lease, pulse = self._leases[i], self._pulses[i]
        sub, error = lease.sub, pulse.error if verdict == "died" else None
        lease.abandoned = True  # never renewed again; a stuck thread that wakes leaves
        log.error(
            "topic %s: consumer thread %s %s; what it held goes back to the group when "
            "its lease runs out (%gs); starting a new thread",
            sub.name, pulse.name(), why(verdict, sub.options.lease, error),
            sub.options.lease, exc_info=error,
        )  # fmt: skip
        if not self._revivals.allow(sub.name):
            self._fail(
                f"topic {sub.name}: consumer threads ended more than {MAX_REVIVALS} "
                f"times within {REVIVAL_WINDOW:g}s"
            )
            return
        new = GroupLease(lease.conn, sub)
        try:
            new.join()
            self._start_thread(new, i)
        except RedrelayError as exc:
            lease.abandoned = False  # not replaced yet: tried again on the next round
            log.warning("topic %s: could not join again (%s)", sub.name, exc)
        except RuntimeError as exc:  # "can't start new thread"
            self._fail(f"topic {sub.name}: cannot start a new thread ({exc})")

    def _fail(self, reason: str) -> None:
        self._stopping.set()
        if self.give_up is not None:
            self.give_up(reason)
        else:
            log.critical("%s; the topic subscribers stop", reason)
