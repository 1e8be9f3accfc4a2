"""The consumer thread's loop over a batch, for the common case: a plain function handler
with no ``time_limit`` and no signing key (with or without ``result_ttl``).

A no-op handler drains at the speed of this loop, so it does per message only what the
guarantees need: take the entry from ``slot.pending`` under the slot's lock (``stop()``
gives back whatever is still there), decode it, build the Message, run the handler, and
append its tag to the acks (they ride on the next fetch, after the handler returned).
With ``result_ttl=`` it also keeps each return value for
the complete call (worker/results.py) and skips deliveries cancelled before they ran.
Every other entry (redelivered, marked, malformed, signed) and every handler that raised
goes through the general code in :mod:`.dispatch`, which this loop calls for it. Without
a time limit no watchdog interrupts the thread, so the second lock taken around the end
of each delivery in ``Runner._run_batch`` is not needed here.

Chosen once per consumer thread (:func:`eligible`); ``Runner._run_batch`` stays the path
of every other consumer.
"""

from __future__ import annotations

from inspect import isawaitable
from time import monotonic
from typing import TYPE_CHECKING

from .._faults import crash_point
from ..errors import DecodeError
from ..handlers import from_handler, run_awaitable
from ..message import Message, first_delivery
from ..observers import plan
from ..protocol.envelope import fresh_envelope
from .dispatch import Outcome, Started, finish, handle_entry, settle

if TYPE_CHECKING:
    from ..handlers import Consumer, SyncHandler
    from .leases import Batch, Lease
    from .runner import Runner
    from .timelimit import Slot

__all__ = ["eligible", "run_batch"]

_ACKED = Outcome.ACKED


def eligible(runner: Runner, consumer: Consumer, lease: Lease) -> bool:
    """Whether ``consumer``'s threads may run :func:`run_batch` (decided once per thread:
    none of these can change while the worker runs)."""
    options = consumer.options
    return (
        not consumer.is_async
        and options.time_limit is None
        and runner.relay.signing_key is None
        and options.max_deliveries >= 1
    )


def run_batch(
    runner: Runner,
    consumer: Consumer,
    lease: Lease,
    slot: Slot,
    batch: Batch,
    acks: list[str],
    ack_batch: int,
    ack_interval: float,
) -> None:
    """Handle the batch in ``slot.pending`` as ``Runner._run_batch`` does; collect the
    acks in ``acks`` (flushed early when ``ack_batch`` are pending or ``ack_interval``
    seconds passed, so slow handlers do not sit on finished work)."""
    relay, halt, stopping = runner.relay, runner._halt, runner._stopping
    name = consumer.name
    # The handler inside the contexts that the relay's instruments ask for (a batch
    # observer reads the clock around it, see redrelay.observers).
    batch_run = plan(consumer.handler, relay.handler_contexts)
    handler = batch_run.handler
    lock, pending, pulse = slot.lock, slot.pending, slot.pulse
    is_set, popleft, append = stopping.is_set, pending.popleft, acks.append
    current = lease.current
    tracker = lease.tracker
    acked, others = 0, []
    flushed = monotonic()
    while True:
        with lock:
            if not pending or is_set():
                break
            if not current(batch):
                # The lease was taken over: these entries are already back in the queue.
                pending.clear()
                break
            tag, entry = popleft()
            slot.current = (tag, entry, 0.0)
        pulse.busy = True  # the handler's own time (the keeper does not judge it)
        try:
            env = fresh_envelope(entry)
        except DecodeError:
            env = None  # the general path dead-letters it, with the reason
        if env is None:  # not a first delivery of a plain JSON entry
            outcome = handle_entry(relay, consumer, lease, tag, entry, None, halt, slot)
        else:
            message = first_delivery(env, name, tag)
            if tracker is not None:
                outcome = _tracked(
                    runner, consumer, lease, slot, handler, entry, message
                )
            else:
                crash_point("handler")
                try:
                    result = handler(message)
                    if result is not None and isawaitable(result):
                        run_awaitable(result, None)
                    outcome = _ACKED
                except BaseException as exc:  # noqa: B036 - as call_handler: a failure
                    started = Started(message, 0)
                    outcome = settle(
                        relay, consumer, lease, tag, entry, started,
                        from_handler(exc), halt, slot,
                    )  # fmt: skip
        pulse.busy = False
        pulse.beat = now = monotonic()
        slot.current = None
        if slot.abandoned:
            return  # the keeper gave up on this thread: what it held comes back
        if outcome is _ACKED:
            append(tag)
            acked += 1
            if len(acks) >= ack_batch or now - flushed > ack_interval:
                runner._flush(lease, acks)
                acks.clear()
                flushed = now
        else:
            others.append(outcome)
    runner._count_all(acked, others)
    batch_run.report(name)


def _tracked(
    runner: Runner,
    consumer: Consumer,
    lease: Lease,
    slot: Slot,
    handler: SyncHandler,
    entry: bytes,
    message: Message,
) -> Outcome:
    """One first delivery of a consumer with ``result_ttl=``: as :func:`.dispatch.begin`
    and :func:`.dispatch.finish` do for it, without their per-message objects.
    ``handler`` is the batch's (run_batch's: inside the contexts, timed for observers)."""
    tracker = lease.tracker
    assert tracker is not None
    tag = message.delivery_tag
    assert tag is not None
    tracked = tracker.begin(tag, entry, message)
    if tracked is None:
        return _ACKED  # cancelled before it ran: acked, and recorded as cancelled
    relay = runner.relay
    crash_point("handler")
    try:  # call_handler() without its layers, as run_batch() does
        value = handler(message)
        if value is not None and isawaitable(value):
            value = run_awaitable(value, None)
    except BaseException as error:  # noqa: B036 - as call_handler: a failure
        started = Started(message, 0)
        return settle(
            relay, consumer, lease, tag, entry, started, from_handler(error),
            runner._halt, slot,
        )  # fmt: skip
    if value is None:  # Tracker.succeeded() inlined, for the common case
        (tracker.finished if tracked else tracker.plain)[tag] = (
            message.id,
            tracker.none,
        )
        return _ACKED
    halt = runner._halt
    if tracker.succeeded(tag, message.id, value, tracked) is None:
        return _ACKED
    # The codec cannot encode the value: finish() dead-letters the message.
    started = Started(message, 0)
    return finish(relay, consumer, lease, tag, entry, started, value, halt)
