"""One topic delivery: check it (:func:`begin`), run its handler, decide what follows
(:func:`settle`).

The topic twin of :mod:`redrelay.worker.dispatch`. Sync handlers run between the two on
their subscriber thread; ``async def`` handlers run as coroutines on the worker's event
loop (:mod:`redrelay.worker.topics`), and the fetching thread settles them as they end.
So the retry and dead-letter rules exist once for both.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import DecodeError, Reject, Retry
from ..failures import Failure, report_dead, report_failure
from ..handlers import acall_handler
from ..message import Message
from ..protocol.envelope import decode_entry
from ..protocol.transitions import dead_record
from .aioloop import error_of
from .dispatch import Outcome
from .leases import retry_forever

if TYPE_CHECKING:
    from ..relay import Relay
    from .aioloop import Bounded
    from .topic_leases import GroupLease
    from .topics import TopicRunner

__all__ = ["ACK_INTERVAL", "Flight", "Item", "begin", "bury", "settle"]

log = logging.getLogger("redrelay.worker")

#: Acks are sent at once when handlers are slower than this (else with the next fetch).
ACK_INTERVAL = 0.05
#: A fetched entry: (stream id, entry, deliveries, failures).
Item = tuple[str, bytes, int, int]
Future = concurrent.futures.Future[Any]


def begin(
    relay: Relay,
    lease: GroupLease,
    sid: str,
    entry: bytes,
    deliveries: int,
    failures: int,
    halt: threading.Event,
) -> Message | Outcome:
    """Decode and check a delivery before its handler runs: the handler's Message, or
    the outcome when it must not run (malformed or over ``max_deliveries``: dead-lettered;
    a redelivery whose lease was lost before ``mark``: rejected).

    A redelivery is marked as started here, at hand-out, so that only entries whose
    handler began count against ``max_deliveries`` after a crash.
    """
    sub = lease.sub
    try:
        decoded = decode_entry(entry, relay.signing_key)
    except DecodeError as exc:
        reason = f"malformed entry: {exc.reason}"
        return bury(
            relay, lease, sid, f"bad-{sid}", entry, reason, None, deliveries, halt
        )
    env = decoded.envelope
    message = Message(
        id=sid if env is None else env["i"],
        body=decoded.raw if env is None else env["b"],
        headers={} if env is None else (env.get("h") or {}),
        topic=sub.topic.name,
        stream_id=sid,
        group=sub.group,
        attempt=deliveries,
        failures=failures,
        enqueued_at=0.0 if env is None else env.get("t", 0) / 1000,
        raw=env is None,
        delivery_tag=f"{lease.consumer_id}:{sid}",
    )
    limit = sub.options.max_deliveries
    if deliveries > limit:
        reason = (
            f"delivered {deliveries - 1} times without finishing (max_deliveries="
            f"{limit}): its consumer crashed, was killed or lost its lease"
        )
        return bury(
            relay, lease, sid, message.id, entry, reason, None, deliveries, halt,
            message,
        )  # fmt: skip
    if deliveries > 1 and not retry_forever(
        lambda: lease.mark(sid), halt, f"mark on {sub.name}"
    ):
        return Outcome.REJECTED  # the lease was taken over: it is back in the group
    return message


def settle(
    relay: Relay,
    lease: GroupLease,
    entry: bytes,
    message: Message,
    error: BaseException,
    halt: threading.Event,
) -> Outcome:
    """What follows a handler that raised ``error`` (any ``BaseException``): a retry or
    a dead letter."""
    sub, opts = lease.sub, lease.sub.options
    sid, deliveries = message.stream_id or "", message.attempt
    failures, delay = message.failures, None
    if isinstance(error, Reject):
        _report(relay, lease, message, error, None)
        reason = f"rejected: {error.reason}"
        return bury(
            relay, lease, sid, message.id, entry, reason, error, deliveries, halt,
            message,
        )  # fmt: skip
    if isinstance(error, Retry):
        failures, delay = failures + (1 if error.count else 0), error.delay
    else:
        failures += 1
    if failures > opts.retries:
        _report(relay, lease, message, error, None)
        reason = (
            f"failed {failures} times (retries={opts.retries}); last error: "
            f"{type(error).__name__}: {error}"
        )
        return bury(
            relay, lease, sid, message.id, entry, reason, error, deliveries, halt,
            message,
        )  # fmt: skip
    if delay is None:
        delay = opts.backoff.delay(failures)
    _report(relay, lease, message, error, delay)
    d, n = delay, failures
    done = retry_forever(lambda: lease.retry(sid, d, n), halt, f"retry on {sub.name}")
    return Outcome.RETRIED if done else Outcome.REJECTED


def bury(
    relay: Relay,
    lease: GroupLease,
    sid: str,
    msg_id: str,
    entry: bytes,
    reason: str,
    exc: BaseException | None,
    attempt: int,
    halt: threading.Event,
    message: Message | None = None,
) -> Outcome:
    """Dead-letter an entry in its group (rejected if the lease was taken over)."""
    sub = lease.sub
    report_dead(
        relay,
        Failure(
            kind="topic", name=sub.name, message=message, error=exc, attempt=attempt,
            dead=True, reason=reason,
        ),
    )  # fmt: skip
    record = dead_record(
        id=msg_id, queue=sub.topic.name, entry=entry, reason=reason, exc=exc,
        attempt=attempt,
    )  # fmt: skip
    record["stream_id"], record["group"] = sid, sub.group
    data, cap = orjson.dumps(record), relay.dead_letter_cap
    ok = retry_forever(
        lambda: lease.bury(sid, msg_id, data, cap), halt, f"dead-letter on {sub.name}"
    )
    return Outcome.DEAD if ok else Outcome.REJECTED


def _report(
    relay: Relay,
    lease: GroupLease,
    message: Message,
    error: BaseException,
    retry_in: float | None,
) -> None:
    failure = Failure(
        kind="topic", name=lease.sub.name, message=message, error=error,
        attempt=message.attempt, retry_in=retry_in,
    )  # fmt: skip
    report_failure(relay, failure)


class Flight:
    """The coroutines one fetching thread has in flight on the loop, settled on that
    thread as they end (the loop runs handlers only, no Redis I/O of redrelay's)."""

    def __init__(
        self, runner: TopicRunner, lease: GroupLease, bounded: Bounded, acks: list[str]
    ) -> None:
        self.runner = runner
        self.lease = lease
        self.bounded = bounded
        self.acks = acks
        self.running: dict[Future, tuple[bytes, Message]] = {}
        self.ended: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.flushed = time.monotonic()

    def start(self, sid: str, entry: bytes, deliveries: int, failures: int) -> None:
        """Check one delivery and send its handler to the loop (a permit is held)."""
        runner, lease = self.runner, self.lease
        try:
            started = begin(
                runner.relay, lease, sid, entry, deliveries, failures, runner._halt
            )
        except BaseException:
            self.bounded.release()
            raise
        if isinstance(started, Outcome):
            self.bounded.release()
            self._done(started, sid, deliveries)
            return
        coro = acall_handler(lease.sub.handler, started, runner.relay.handler_contexts)
        self.running[self.bounded.submit(coro, self.ended.put)] = (entry, started)

    def harvest(self, wait: float) -> None:
        """Settle the coroutines that ended (waiting up to ``wait`` for one)."""
        while self.running:
            try:
                future = (
                    self.ended.get(timeout=wait) if wait else self.ended.get_nowait()
                )
            except queue.Empty:
                break
            wait = 0
            entry, message = self.running.pop(future)
            if future.cancelled():
                continue  # cancelled at shutdown: it returns under the lease rule
            error = error_of(future)
            outcome = Outcome.ACKED
            if error is not None:
                outcome = settle(
                    self.runner.relay,
                    self.lease,
                    entry,
                    message,
                    error,
                    self.runner._halt,
                )
            self._done(outcome, message.stream_id or "", message.attempt)
        if self.acks and time.monotonic() - self.flushed > ACK_INTERVAL:
            self.runner._flush(self.lease, self.acks)
            self.flushed = time.monotonic()

    def _done(self, outcome: Outcome, sid: str, deliveries: int) -> None:
        self.flushed = self.runner._done(
            self.lease, outcome, sid, deliveries, self.acks, self.flushed
        )
