"""One delivery: decode, check the delivery limit, run the handler, decide what happens next."""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from .._faults import crash_point
from ..errors import Cancelled, DecodeError, Reject, Retry, TimeLimitExceeded
from ..failures import Failure, report_dead, report_failure
from ..handlers import call_handler
from ..message import Message, bind_cancel, make_message
from ..protocol.envelope import Decoded, decode_entry, fresh_envelope, rewrite_header
from ..protocol.results import failure_record
from ..protocol.transitions import dead_record
from .leases import Lease, retry_forever

if TYPE_CHECKING:
    from ..handlers import Consumer
    from ..relay import Relay
    from .timelimit import Slot

__all__ = ["Outcome", "Started", "begin", "finish", "handle_entry", "settle"]

log = logging.getLogger("redrelay.worker")


class Outcome(enum.Enum):
    """What became of a delivery."""

    ACKED = "acked"
    RETRIED = "retried"
    DEAD = "dead"
    #: The lease was taken over before the transition: another consumer owns it now.
    REJECTED = "rejected"


def to_message(queue: str, tag: str, decoded: Decoded) -> Message:
    """Build the handler's Message from a decoded entry (the fast constructor: hot path)."""
    attempt = decoded.deliveries + 1
    env = decoded.envelope
    if env is None:
        return make_message(
            decoded.raw_id or tag, decoded.raw, {}, queue, None, attempt,
            decoded.failures, 0.0, None, True, tag,
        )  # fmt: skip
    return make_message(
        env["i"], env["b"], env.get("h") or {}, queue, None, attempt,
        decoded.failures, env.get("t", 0) / 1000, None, False, tag,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Started:
    """A delivery that passed its checks: the handler may run now."""

    message: Message
    #: Failed attempts before this one (from the entry's header).
    failures: int


def handle_entry(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    loop: asyncio.AbstractEventLoop | None,
    halt: threading.Event,
    slot: Slot | None = None,
) -> Outcome:
    """Process one delivery on this thread. Never raises for anything the message or
    handler did.

    ``slot`` is the consumer thread's: if the watchdog abandoned it while the handler ran,
    the watchdog already failed this delivery, so nothing more is done here. Async
    handlers run on the worker's event loop instead (:mod:`redrelay.worker.aioloop`),
    between the same :func:`begin` and :func:`settle`.
    """
    started = begin(relay, consumer, lease, tag, entry, halt)
    if isinstance(started, Outcome):
        return started
    crash_point("handler")
    value, error = call_handler(
        consumer.handler, started.message, relay.handler_contexts, loop
    )
    if error is not None:
        return settle(relay, consumer, lease, tag, entry, started, error, halt, slot)
    if lease.tracker is None:
        return Outcome.ACKED
    return finish(relay, consumer, lease, tag, entry, started, value, halt)


def finish(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    started: Started,
    value: object,
    halt: threading.Event,
) -> Outcome:
    """A handler of a consumer with ``result_ttl=`` returned ``value``: keep it for the
    ack (worker/results.py), or dead-letter the message if the codec cannot encode it."""
    message, tracker = started.message, lease.tracker
    assert tracker is not None
    error = tracker.succeeded(tag, message.id, value, tracker.tracked(tag, entry))
    if error is None:
        return Outcome.ACKED
    reason = f"the handler's return value cannot be stored as its result: {error}"
    return _bury(
        relay, consumer, lease, tag, message.id, entry, reason, error,
        message.attempt, halt, message,
    )  # fmt: skip


def begin(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    halt: threading.Event,
) -> Started | Outcome:
    """Decode and check a delivery before its handler runs.

    Returns what the handler needs, or the outcome when it must not run (a malformed
    entry or one over ``max_deliveries`` is dead-lettered; a lost lease rejects it).
    """
    opts = consumer.options
    key = relay.signing_key
    try:
        # The hot path: a first delivery of an unsigned JSON entry needs no Decoded.
        env = fresh_envelope(entry) if key is None else None
        if env is None:
            decoded = decode_entry(entry, key)
            deliveries, failures = decoded.deliveries, decoded.failures
            message = to_message(consumer.name, tag, decoded)
        else:
            deliveries = failures = 0
            message = make_message(
                env["i"], env["b"], env.get("h") or {}, consumer.name, None, 1,
                0, env.get("t", 0) / 1000, None, False, tag,
            )  # fmt: skip
    except DecodeError as exc:
        return _bury(
            relay,
            consumer,
            lease,
            tag,
            f"bad-{tag}",
            entry,
            f"malformed entry: {exc.reason}",
            None,
            1,
            halt,
        )
    if message.attempt > opts.max_deliveries:
        reason = (
            f"delivered {message.attempt - 1} times without finishing (max_deliveries={opts.max_deliveries}): "
            "its consumer crashed, was killed or lost its lease each time"
        )
        return _bury(
            relay,
            consumer,
            lease,
            tag,
            message.id,
            entry,
            reason,
            None,
            message.attempt,
            halt,
            message,
        )
    tracker = lease.tracker
    if tracker is not None:
        if tracker.skip(tag, message.id):
            # Cancelled before it ran: acked, and recorded as cancelled.
            return Outcome.ACKED
        if tracker.tracked(tag, entry):  # only those can be cancelled (cancel.lua)
            bind_cancel(message, tracker.is_cancelled)
    if deliveries and not retry_forever(
        lambda: lease.mark(tag), halt, f"mark on {consumer.name}"
    ):
        return (
            Outcome.REJECTED
        )  # the lease was taken over: the entry is already back in the queue
    return Started(message, failures)


def settle(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    started: Started,
    error: BaseException,
    halt: threading.Event,
    slot: Slot | None = None,
) -> Outcome:
    """What follows a handler that raised ``error`` (any ``BaseException``, see
    :func:`~redrelay.handlers.call_handler`): retry, dead letter, or nothing."""
    message, failures = started.message, started.failures
    delay: float | None = None
    if isinstance(error, Cancelled) and lease.tracker is not None:
        lease.tracker.cancelled(tag, message.id)
        return Outcome.ACKED  # stopped on its cancellation: not a failure
    if isinstance(error, TimeLimitExceeded):
        if slot is not None and slot.abandoned:
            return Outcome.REJECTED
        failures = failures + 1
    elif isinstance(error, Reject):
        _report(relay, consumer, message, error, None)
        return _bury(
            relay,
            consumer,
            lease,
            tag,
            message.id,
            entry,
            f"rejected: {error.reason}",
            error,
            message.attempt,
            halt,
            message,
        )
    elif isinstance(error, Retry):
        failures = failures + (1 if error.count else 0)
        delay = error.delay
    else:
        failures += 1
    return _fail(
        relay, consumer, lease, tag, entry, message, failures, error, delay, halt
    )


def _report(
    relay: Relay,
    consumer: Consumer,
    message: Message,
    error: BaseException,
    retry_in: float | None,
) -> None:
    failure = Failure(
        kind="queue", name=consumer.name, message=message, error=error,
        attempt=message.attempt, retry_in=retry_in,
    )  # fmt: skip
    report_failure(relay, failure)


def _fail(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    message: Message,
    failures: int,
    exc: BaseException,
    delay: float | None,
    halt: threading.Event,
) -> Outcome:
    opts = consumer.options
    if failures > opts.retries:
        _report(relay, consumer, message, exc, None)
        reason = f"failed {failures} times (retries={opts.retries}); last error: {type(exc).__name__}: {exc}"
        return _bury(
            relay,
            consumer,
            lease,
            tag,
            message.id,
            entry,
            reason,
            exc,
            message.attempt,
            halt,
            message,
        )
    if delay is None:
        delay = opts.backoff.delay(failures)
    _report(relay, consumer, message, exc, delay)
    new_entry = rewrite_header(entry, message.attempt, failures, raw_id=message.id)
    crash_point("retry")
    ok = retry_forever(
        lambda: lease.retry(tag, new_entry, delay, message.id),
        halt,
        f"retry on {consumer.name}",
    )
    return Outcome.RETRIED if ok else Outcome.REJECTED


def _bury(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    msg_id: str,
    entry: bytes,
    reason: str,
    exc: BaseException | None,
    attempt: int,
    halt: threading.Event,
    message: Message | None = None,
) -> Outcome:
    report_dead(
        relay,
        Failure(
            kind="queue", name=consumer.name, message=message, error=exc,
            attempt=attempt, dead=True, reason=reason,
        ),
    )  # fmt: skip
    record = orjson.dumps(
        dead_record(
            id=msg_id,
            queue=consumer.name,
            entry=entry,
            reason=reason,
            exc=exc,
            attempt=attempt,
        )
    )
    cap = relay.dead_letter_cap
    # A consumer with result_ttl= stores the failure with the death (bury.lua).
    tracker = lease.tracker
    failure = None if tracker is None else failure_record(exc, reason)
    tracked = tracker is None or tracker.tracked(tag, entry)
    crash_point("bury")
    ok = retry_forever(
        lambda: lease.bury(tag, msg_id, record, cap, failure, tracked),
        halt,
        f"dead-letter on {consumer.name}",
    )
    return Outcome.DEAD if ok else Outcome.REJECTED


def fail_delivery(
    relay: Relay,
    consumer: Consumer,
    lease: Lease,
    tag: str,
    entry: bytes,
    exc: BaseException,
    halt: threading.Event,
) -> Outcome:
    """Count a failure for a delivery whose handler did not finish normally (abandoned past
    its time limit, or cut by an unexpected worker error): retry it, or dead-letter it."""
    try:
        decoded = decode_entry(entry, relay.signing_key)
    except DecodeError as error:
        reason = f"malformed entry: {error.reason}"
        return _bury(
            relay, consumer, lease, tag, f"bad-{tag}", entry, reason, None, 1, halt
        )
    try:
        message = to_message(consumer.name, tag, decoded)
    except Exception as error:  # the entry itself is bad: never let it kill the thread
        reason = f"malformed entry: {error}"
        return _bury(
            relay, consumer, lease, tag, f"bad-{tag}", entry, reason, None, 1, halt
        )
    return _fail(
        relay,
        consumer,
        lease,
        tag,
        entry,
        message,
        decoded.failures + 1,
        exc,
        None,
        halt,
    )
