"""An async consumer's plain deliveries run inline, one run of a batch per coroutine.

With ``concurrency=1`` (the default) the coroutines of a batch run one after the other
in one chain on the loop (:class:`~redrelay.worker.aioloop.Bounded`). For the common
case (first deliveries of unsigned JSON entries, no handler contexts, no time limit,
no ``result_ttl``) the fetching thread does not build a message and a wrapping
coroutine per delivery either: it hands the raw run of the batch over and
:func:`run_inline` does on the loop what :mod:`.fastpath` does on a thread: take each
delivery out of the slot as it starts, decode it, build its Message, await its handler.
A handler that returns adds its tag to ``acked`` (the thread takes them as they come,
and sends them with the next fetch or after the ack interval); one that raises
(``BaseException`` included, and a ``CancelledError`` that is not the worker's own
cancellation) or an entry that does not decode goes to ``finished``, for the thread to
settle as for any coroutine (retry, dead letter). The thread is woken when the run
ends, not per message: a no-op handler then costs about what it costs on a thread
(py-spy: the task, the future, the wrapper and the wake-up per message were half an
``async def`` consumer's time).

:func:`acall_bare` is the wrapper of one handler's coroutine in the other cases without
handler contexts nor a time limit (one frame instead of three).

Unstarted deliveries stay in ``slot.pending``, so ``stop()`` gives them back at once,
as before. If the worker cancels the chain (shutdown after the grace period), the
delivery that was running returns under the lease rule, as a cancelled task's does.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from inspect import isawaitable
from typing import TYPE_CHECKING

from .._faults import crash_point
from ..errors import DecodeError
from ..handlers import Called, from_handler
from ..message import Message, first_delivery
from ..protocol.envelope import fresh_envelope
from .dispatch import Outcome, Started, begin, settle

if TYPE_CHECKING:
    from ..handlers import Handler
    from ..observers import BatchRun
    from .aiobatch import _AsyncBatch

__all__ = [
    "END",
    "Failed",
    "acall_bare",
    "admit",
    "ignore",
    "run_inline",
    "settle_inline",
]


class Failed:
    """A delivery of an inline run whose handler raised (``message`` set) or whose entry
    did not decode (``message`` None: :func:`~.dispatch.begin` dead-letters it)."""

    __slots__ = ("entry", "error", "message")

    def __init__(
        self, entry: bytes, message: Message | None, error: BaseException | None
    ) -> None:
        self.entry, self.message, self.error = entry, message, error


#: Put in ``finished`` under a run's first tag when the run has ended.
END = Failed(b"", None, None)


def admit(key: str) -> bool:
    """A run is always admitted: each of its deliveries is claimed as it starts."""
    return True


def ignore(key: str, task: object) -> None:
    """A run reports its own end (:data:`END`), cancelled or not."""


async def run_inline(
    run: _AsyncBatch, items: list[tuple[str, bytes]], planned: BatchRun
) -> None:
    """On the loop, in the consumer's chain: run the handler of each delivery in turn
    (``planned.handler``: the consumer's, or it wrapped for the relay's instruments)."""
    slot, consumer = run.slot, run.consumer
    lock, pending, wake = slot.lock, slot.pending, run.wake
    name = consumer.name
    # The handler for a message without headers, and for one with (inside the contexts
    # that must see those, when observers.aplan found some), picked without a branch.
    handlers = (planned.with_headers or planned.handler, planned.handler)
    # The handlers' clock reads, for the batch observers (observers.aplan) if any.
    timed, timings = bool(planned.observers), planned.timings
    starts, ends, enqueued = (
        timings.starts.append,
        timings.ends.append,
        timings.enqueued.append,
    )
    acked, finished = run.acked, run.finished
    last = items[-1][0]
    coroutine = types.CoroutineType
    try:
        for tag, entry in items:
            with lock:
                if not pending or pending[0][0] != tag:
                    continue  # given back by stop(), or dropped with a lost lease
                pending.popleft()
                if len(pending) <= run.below and not wake.is_set():
                    wake.set()  # the fetching thread waits for this
            if tag == last:
                run.started_at = time.monotonic()
            try:
                env = fresh_envelope(entry)
                if env is None:  # not for this path (admitted by is_fresh_json)
                    raise DecodeError(entry, "not a fresh JSON entry")
            except DecodeError:
                finished.append((tag, Failed(entry, None, None)))
                continue
            message = first_delivery(env, name, tag)
            crash_point("handler")
            if timed:
                enqueued(message.enqueued_at)
                starts(time.time())
            try:
                result = handlers[not message.headers](message)
                if type(result) is coroutine or (
                    result is not None and isawaitable(result)
                ):
                    await result
            except asyncio.CancelledError as exc:
                if _cancelled():
                    raise  # the worker's: the delivery returns under the lease rule
                finished.append((tag, Failed(entry, message, from_handler(exc))))
                continue
            except BaseException as exc:  # noqa: B036 - see handlers.call_handler
                finished.append((tag, Failed(entry, message, from_handler(exc))))
                continue
            finally:
                if timed:
                    ends(time.time())
            acked.append(tag)
    finally:
        planned.report(name)
        finished.append((items[0][0], END))
        run.nudge()


async def acall_bare(handler: Handler, message: Message) -> Called:
    """:func:`~redrelay.handlers.acall_handler` without handler contexts nor a time
    limit (the common case), in one coroutine frame instead of three and no
    ``ExitStack``: a no-op handler's whole cost is what wraps it. The same outcomes:
    ``(value, None)`` or ``(None, what it raised)``; the worker's own cancellation of
    the task goes on."""
    try:
        result = handler(message)
        if type(result) is types.CoroutineType or (
            result is not None and isawaitable(result)
        ):
            result = await result
        return result, None
    except asyncio.CancelledError as exc:
        if _cancelled():
            raise
        return None, from_handler(exc)
    except BaseException as exc:  # noqa: B036 - see handlers.call_handler
        return None, from_handler(exc)


def _cancelled() -> bool:
    """Whether the running task is being cancelled (not a handler's own raise)."""
    task = asyncio.current_task()
    return task is not None and (sys.version_info < (3, 11) or task.cancelling() > 0)


def settle_inline(run: _AsyncBatch, tag: str, failed: Failed) -> None:
    """On the fetching thread: settle a delivery of a run that did not return."""
    runner, consumer, lease = run.runner, run.consumer, run.lease
    relay, halt = runner.relay, runner._halt
    if failed.message is None:
        # A malformed entry: begin() dead-letters it, with the reason.
        got = begin(relay, consumer, lease, tag, failed.entry, halt)
        if isinstance(got, Outcome):
            outcome = got
        else:  # it did decode after all (never seen): a failure, retried as usual
            error = DecodeError(failed.entry, "could not start an inline delivery")
            outcome = settle(
                relay, consumer, lease, tag, failed.entry, got, error, halt
            )
    else:
        assert failed.error is not None
        started = Started(failed.message, 0)
        outcome = settle(
            relay, consumer, lease, tag, failed.entry, started, failed.error, halt
        )
    run.counts[outcome] += 1
    if outcome is Outcome.ACKED:
        run.acks.append(tag)
