"""A topic subscriber thread's loop over one fetched batch (plain ``def`` handlers).

A no-op handler drains at the speed of this loop, so a first delivery of a plain JSON
entry (no signing key) takes the short way, as the queue worker's :mod:`.fastpath`
does: the envelope checked by :func:`~redrelay.protocol.envelope.fresh_envelope`, the
Message built without its frozen dataclass ``__init__``, the handler called, the ack
collected, the outcome counted once per batch. Every other entry (a redelivery, a retry,
a malformed or signed one) and every handler that raised goes through
:func:`~redrelay.worker.topic_dispatch.begin` and :func:`~.topic_dispatch.settle`, the
code ``async def`` subscribers share, so the retry and dead-letter rules exist once.
"""

from __future__ import annotations

from inspect import isawaitable
from time import monotonic
from typing import TYPE_CHECKING

from ..errors import DecodeError
from ..handlers import from_handler, run_awaitable
from ..message import first_delivery
from ..observers import plan
from ..protocol.envelope import fresh_envelope
from .dispatch import Outcome
from .topic_dispatch import ACK_INTERVAL, Item, begin, settle

if TYPE_CHECKING:
    from .liveness import Pulse
    from .topic_leases import GroupLease
    from .topics import TopicRunner

__all__ = ["run_batch"]

_ACKED = Outcome.ACKED


def run_batch(
    runner: TopicRunner,
    lease: GroupLease,
    items: list[Item],
    acks: list[str],
    pulse: Pulse,
) -> None:
    """Run ``items`` in order; collect the acks of those that succeeded in ``acks`` (sent
    with the next fetch, or at once for a redelivery or when handlers are slow).

    Stops early when the worker stops or the lease is lost: the rest goes back on
    ``leave()``, or already went back with the lease.
    """
    relay, halt, stopping = runner.relay, runner._halt, runner._stopping
    sub = lease.sub
    # The handler inside the contexts that the relay's instruments ask for (a batch
    # observer reads the clock around it, see redrelay.observers).
    batch_run = plan(sub.handler, relay.handler_contexts)
    handler = batch_run.handler
    # (as begin() would: unsigned entries only; a first delivery is within the limit)
    fast = relay.signing_key is None and sub.options.max_deliveries >= 1
    topic, group = sub.topic.name, sub.group
    cid = lease.consumer_id
    prefix = f"{cid}:"
    is_set, append = stopping.is_set, acks.append
    acked, others = 0, []
    flushed = monotonic()
    for sid, entry, deliveries, failures in items:
        if is_set() or lease.consumer_id != cid:
            break
        env = None
        if fast and deliveries == 1 and failures == 0:
            try:
                env = fresh_envelope(entry)
            except DecodeError:
                env = None  # begin() dead-letters it, with the reason
        if env is None:
            started = begin(relay, lease, sid, entry, deliveries, failures, halt)
            if isinstance(started, Outcome):
                outcome = started
            else:
                pulse.busy = True
                outcome = runner._call(lease, entry, started)
                pulse.busy = False
        else:
            message = first_delivery(env, None, prefix + sid, topic, sid, group)
            pulse.busy = True  # the handler's own time (the keeper does not judge it)
            try:
                result = handler(message)
                if result is not None and isawaitable(result):
                    run_awaitable(result, None)
                outcome = _ACKED
            except BaseException as exc:  # noqa: B036 - as call_handler: a failure
                pulse.busy = False
                outcome = settle(relay, lease, entry, message, from_handler(exc), halt)
            pulse.busy = False
        pulse.beat = now = monotonic()
        if outcome is not _ACKED:
            others.append(outcome)
            continue
        append(sid)
        acked += 1
        # A finished redelivery is acked at once: it is marked as started, and a crash
        # before its ack would count it against max_deliveries.
        if deliveries > 1 or now - flushed > ACK_INTERVAL:
            runner._flush(lease, acks)
            flushed = now
    runner._count(acked, others)
    batch_run.report(topic)
