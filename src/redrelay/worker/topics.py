"""Runs topic subscribers: one consumer of its group per thread, leases, retries, recovery.

Each thread is a consumer of its topic's group (a stream consumer named by a fresh id)
holding a lease in the group's ``leases`` sorted set, kept alive by the keeper thread's
heartbeats, not by the handler. So a handler may run for 30 minutes without its entry
being taken (no idle-time reclaim); a consumer that stops heartbeating for longer than
its lease loses everything it holds back to the group (``topic_recover.lua``) within a
sweep. An entry's owner in the stream's pending list is the lease token: acks, retries
and dead-letterings from a consumer that lost its lease are rejected and counted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BrokerError, BrokerUnavailable, DecodeError, Reject, Retry
from ..handlers import invoke
from ..message import Message
from ..protocol.envelope import decode_entry
from ..protocol.transitions import dead_record
from ..topic import TopicSubscription
from .dispatch import Outcome
from .leases import retry_forever
from .topic_leases import (
    Fetched,
    GroupLease,
    create_group,
    group_idle,
    recover_expired,
)

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..relay import Relay

__all__ = ["TopicRunner"]

log = logging.getLogger("redrelay.worker")

#: Seconds between sweeps for expired leases.
SWEEP_INTERVAL = 1.0
#: Acks are sent at once when handlers are slower than this (else with the next fetch).
ACK_INTERVAL = 0.05


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
        self._threads: list[threading.Thread] = []
        self._leases: list[GroupLease] = []
        self._keeper: threading.Thread | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        """Create each group (at its start position), join, start threads and the keeper."""
        self._conn = conn = self.relay.new_connection(
            socket_timeout=max(10.0, self.poll + 5)
        )
        for sub in self.subs:
            retry_forever(
                lambda s=sub: create_group(conn, s), self._stopping, f"topic {sub.name}"
            )
            retry_forever(sub.topic.register, self._stopping, f"topic {sub.name}")
            for n in range(sub.options.concurrency):
                lease = GroupLease(conn, sub)
                retry_forever(lease.join, self._stopping, f"topic {sub.name}: join")
                self._leases.append(lease)
                thread = threading.Thread(
                    target=self._consume,
                    args=(lease,),
                    name=f"redrelay-topic-{sub.name}-{n}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        if self.subs:
            self._keeper = threading.Thread(
                target=self._keep, name="redrelay-topic-keeper", daemon=True
            )
            self._keeper.start()

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
        self._halt.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
        running = 0
        for lease, thread in zip(self._leases, self._threads, strict=True):
            if thread.is_alive():
                running += 1
                continue
            try:
                lease.leave()
            except BrokerError as exc:
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
        elif self._conn is not None:
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

    def _consume(self, lease: GroupLease) -> None:
        sub = lease.sub
        loop = asyncio.new_event_loop() if _is_async(sub) else None
        acks: list[str] = []
        resync = False
        try:
            while not self._stopping.is_set():
                try:
                    got = lease.fetch(sub.options.prefetch, acks, resync)
                except BrokerError as exc:
                    # BrokerUnavailable: the reply may be lost, so resync (re-read what this
                    # consumer holds) and resend the acks. NOGROUP: the stream was deleted.
                    log.warning("topic %s: fetch failed (%s); retrying", sub.name, exc)
                    resync = True
                    if "NOGROUP" in str(exc):
                        self._recreate(lease)
                    self._stopping.wait(1.0)
                    continue
                except Exception:
                    log.exception("topic %s: unexpected error in fetch", sub.name)
                    self._stopping.wait(1.0)
                    continue
                self._report(lease, len(acks), got)
                acks.clear()
                resync = False
                if got.status == -1:
                    retry_forever(lease.heartbeat, self._stopping, f"topic {sub.name}")
                elif got.status == 0:
                    self._wait(lease, got.wait)
                else:
                    self._run_batch(lease, got.items, loop, acks)
            if acks:
                retry_forever(lambda: lease.ack(acks), self._halt, f"ack on {sub.name}")
        finally:
            if loop is not None:
                loop.close()

    def _recreate(self, lease: GroupLease) -> None:
        try:
            create_group(lease.conn, lease.sub)
            lease.join()
        except BrokerError:
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

    def _run_batch(
        self,
        lease: GroupLease,
        items: list[tuple[str, bytes, int, int]],
        loop: asyncio.AbstractEventLoop | None,
        acks: list[str],
    ) -> None:
        flushed = time.monotonic()
        cid = lease.consumer_id
        for sid, entry, deliveries, failures in items:
            if self._stopping.is_set() or lease.consumer_id != cid:
                return  # the rest goes back on leave(), or already went with the lease
            outcome = self._handle(lease, sid, entry, deliveries, failures, loop)
            with self._lock:
                self.outcomes[outcome] += 1
            if outcome is Outcome.ACKED:
                acks.append(sid)
                now = time.monotonic()
                # A finished redelivery is acked at once: it is marked as started, and
                # a crash before its ack would count it against max_deliveries.
                if deliveries > 1 or now - flushed > ACK_INTERVAL:
                    held = retry_forever(
                        lambda: lease.ack(acks), self._halt, f"ack on {lease.sub.name}"
                    )
                    self._rejected(lease, len(acks) - held)
                    acks.clear()
                    flushed = now

    def _handle(
        self,
        lease: GroupLease,
        sid: str,
        entry: bytes,
        deliveries: int,
        failures: int,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Outcome:
        """One delivery: decode, check the delivery limit, run, then ack/retry/bury."""
        sub, opts = lease.sub, lease.sub.options
        try:
            decoded = decode_entry(entry, self.relay.signing_key)
        except DecodeError as exc:
            reason = f"malformed entry: {exc.reason}"
            return self._bury(lease, sid, f"bad-{sid}", entry, reason, None, deliveries)
        env = decoded.envelope
        message = Message(
            id=sid if env is None else env["i"],
            body=decoded.raw if env is None else env["b"],
            headers={} if env is None else (env.get("h") or {}),
            topic=sub.topic.name,
            stream_id=sid,
            attempt=deliveries,
            failures=failures,
            enqueued_at=0.0 if env is None else env.get("t", 0) / 1000,
            raw=env is None,
            delivery_tag=f"{lease.consumer_id}:{sid}",
        )
        if deliveries > opts.max_deliveries:
            reason = (
                f"delivered {deliveries - 1} times without finishing (max_deliveries="
                f"{opts.max_deliveries}): its consumer crashed, was killed or lost its lease"
            )
            return self._bury(lease, sid, message.id, entry, reason, None, deliveries)
        if deliveries > 1 and not retry_forever(
            lambda: lease.mark(sid), self._halt, f"mark on {sub.name}"
        ):
            return Outcome.REJECTED  # the lease was taken over: it is back in the group
        delay: float | None = None
        try:
            invoke(sub.handler, message, self.relay.handler_contexts, loop)
        except Reject as exc:
            reason = f"rejected: {exc.reason}"
            return self._bury(lease, sid, message.id, entry, reason, exc, deliveries)
        except Retry as exc:
            failed: Exception = exc
            failures, delay = failures + (1 if exc.count else 0), exc.delay
        except Exception as exc:
            failed, failures = exc, failures + 1
        else:
            return Outcome.ACKED
        if failures > opts.retries:
            reason = (
                f"failed {failures} times (retries={opts.retries}); last error: "
                f"{type(failed).__name__}: {failed}"
            )
            return self._bury(lease, sid, message.id, entry, reason, failed, deliveries)
        if delay is None:
            delay = opts.backoff.delay(failures)
        log.info(
            "topic %s: message %s failed (attempt %d, %s: %s); retrying in %.2fs",
            sub.name, message.id, deliveries, type(failed).__name__, failed, delay,
        )  # fmt: skip
        d = delay
        done = retry_forever(
            lambda: lease.retry(sid, d, failures), self._halt, f"retry on {sub.name}"
        )
        return Outcome.RETRIED if done else Outcome.REJECTED

    def _bury(
        self,
        lease: GroupLease,
        sid: str,
        msg_id: str,
        entry: bytes,
        reason: str,
        exc: BaseException | None,
        attempt: int,
    ) -> Outcome:
        sub = lease.sub
        log.warning("topic %s: message %s dead-lettered: %s", sub.name, msg_id, reason)
        record = dead_record(
            id=msg_id, queue=sub.topic.name, entry=entry, reason=reason, exc=exc,
            attempt=attempt,
        )  # fmt: skip
        record["stream_id"], record["group"] = sid, sub.group
        data, cap = orjson.dumps(record), self.relay.dead_letter_cap
        ok = retry_forever(
            lambda: lease.bury(sid, msg_id, data, cap),
            self._halt,
            f"dead-letter on {sub.name}",
        )
        return Outcome.DEAD if ok else Outcome.REJECTED

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
            for lease in self._leases:
                try:
                    lease.heartbeat()
                except BrokerError as exc:
                    log.warning("topic %s: heartbeat failed (%s)", lease.sub.name, exc)
            if time.monotonic() < next_sweep:
                continue
            next_sweep = time.monotonic() + SWEEP_INTERVAL
            for sub in self.subs:
                try:
                    recover_expired(self._conn or self.relay.connection, sub)
                except BrokerError as exc:
                    log.warning("topic %s: recovery sweep failed (%s)", sub.name, exc)


def _is_async(sub: TopicSubscription) -> bool:
    return inspect.iscoroutinefunction(sub.handler)
