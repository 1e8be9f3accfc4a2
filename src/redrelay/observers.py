"""Handler contexts that the worker's fast loops may narrow, or observe a batch at a time.

A handler context (``relay.add_handler_context``) is entered around every handler call.
Two of ours would cost more per message than a no-op handler itself: tracing with no
OpenTelemetry SDK configured (a no-op span per message), and the metrics histograms (two
observations, each a lock and a bucket search, per message). A context factory may carry,
as attributes:

- ``redrelay_headers_only``: a callable, asked once per batch; when it returns True the
  fast loops enter the context only for messages that have headers (tracing: with no SDK
  configured, a consumer span matters only to continue a trace context that a message
  carries, so that the handler's own messages pass it on);
- ``redrelay_batch``: a :class:`BatchObserver`; the fast loops then read the clock around
  each handler themselves and give it the whole batch at the end (:meth:`BatchRun.report`),
  instead of entering the context per message.

The fast loops are the queue consumer threads' (:mod:`.worker.fastpath`), the topic
subscriber threads' (:mod:`.worker.topic_batch`) and an ``async def`` queue consumer's
inline runs (:mod:`.worker.aioinline`, :func:`aplan`). Every other path (redeliveries,
concurrent ``async def`` handlers, channel subscribers, ``drain()``) enters the contexts
per message as before: an observer sees the same measurements either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from inspect import isawaitable
from time import time
from typing import TYPE_CHECKING, Any, Protocol

from .handlers import ainvoke, invoke, run_awaitable

if TYPE_CHECKING:
    from .handlers import Handler, HandlerContext, SyncHandler
    from .message import Message

__all__ = ["BatchObserver", "BatchRun", "Timings", "aplan", "plan"]

log = logging.getLogger("redrelay.worker")


class Timings:
    """One batch of one consumer thread, in handler order: when each handler started and
    ended (``time.time()``), and when its message was created (``message.enqueued_at``)."""

    __slots__ = ("ends", "enqueued", "starts")

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.enqueued: list[float] = []


class BatchObserver(Protocol):
    """What a context's ``redrelay_batch`` attribute must be."""

    def observe_batch(self, name: str, timings: Timings) -> None:
        """Record a batch of handler runs of queue or topic ``name``."""


class BatchRun:
    """What a fast loop runs its next batch with (see :func:`plan` and :func:`aplan`)."""

    __slots__ = ("handler", "observers", "timings", "with_headers")

    def __init__(self, handler: Handler, observers: list[BatchObserver]) -> None:
        #: What the loop calls per message.
        self.handler = handler
        self.observers = observers
        self.timings = Timings()
        #: For :func:`aplan`: the handler of a message with headers, when contexts must
        #: see those (None: :attr:`handler`).
        self.with_headers: Handler | None = None

    def report(self, name: str) -> None:
        """Give the finished batch to every observer. An observer that raises is logged
        and skipped: measuring must never cost a delivery (the handlers already ran)."""
        timings = self.timings
        if not timings.ends:
            return
        for observer in self.observers:
            try:
                observer.observe_batch(name, timings)
            except Exception:
                log.exception("%s: a batch observer failed (%r)", name, observer)
        # Reported once: an async batch's runs report in turn (worker/aioinline.py).
        for values in (timings.starts, timings.ends, timings.enqueued):
            values.clear()


def plan(handler: SyncHandler, contexts: Sequence[HandlerContext]) -> BatchRun:
    """For a fast loop's next batch: ``handler`` inside the contexts to enter around
    every message and those to enter for messages with headers only, timed for the batch
    observers (the contexts' batch forms) when there are some."""
    every, gated, observers = _split(contexts)
    run = BatchRun(handler, observers)
    if every or (gated and not observers):
        handler, gated = _within(handler, every, gated), []
    if observers:
        handler = _timed(handler, run.timings, gated)
    run.handler = handler
    return run


def aplan(handler: Handler, contexts: Sequence[HandlerContext]) -> BatchRun | None:
    """:func:`plan` for an ``async def`` consumer's inline runs (worker/aioinline.py), or
    None when a context must be entered around every message (then each message runs in
    a task of its own, with :func:`~redrelay.handlers.ainvoke`). :attr:`BatchRun.handler`
    is the consumer's own (the run reads the clock around it when there are observers);
    :attr:`BatchRun.with_headers`, if set, runs it inside the contexts that must see the
    messages with headers (tracing with no SDK)."""
    every, gated, observers = _split(contexts)
    if every:
        return None
    run = BatchRun(handler, observers)
    if gated:

        async def with_headers(message: Message) -> Any:
            return await ainvoke(handler, message, gated)

        run.with_headers = with_headers
    return run


def _split(
    contexts: Sequence[HandlerContext],
) -> tuple[list[HandlerContext], list[HandlerContext], list[BatchObserver]]:
    every: list[HandlerContext] = []
    gated: list[HandlerContext] = []
    observers: list[BatchObserver] = []
    for context in contexts:
        observer = getattr(context, "redrelay_batch", None)
        headers_only = getattr(context, "redrelay_headers_only", None)
        if observer is not None:
            observers.append(observer)
        elif headers_only is not None and headers_only():
            gated.append(context)
        else:
            every.append(context)
    if gated and every and contexts.index(gated[0]) < contexts.index(every[-1]):
        # Entered innermost, a gated context registered before another would nest
        # inside it: keep the order (all of them around every message).
        every, gated = [c for c in contexts if c in every or c in gated], []
    return every, gated, observers


def _within(
    handler: SyncHandler, every: list[HandlerContext], gated: list[HandlerContext]
) -> SyncHandler:
    """``handler`` inside ``every`` context, and inside ``gated`` ones too for a message
    with headers (entering contexts costs more than this call)."""
    both = every + gated
    if every:

        def run(message: Message) -> Any:
            return invoke(handler, message, both if message.headers else every, None)

        return run

    def run_gated(message: Message) -> Any:
        if message.headers:
            return invoke(handler, message, gated, None)
        return handler(message)  # the caller runs an awaitable it returns

    return run_gated


def _timed(
    handler: SyncHandler, timings: Timings, gated: list[HandlerContext]
) -> SyncHandler:
    """``handler``, reading the clock around each call for the batch observers (two
    reads and three appends, about 0.2 µs: one prometheus_client observation is 2 µs),
    inside the ``gated`` contexts for a message with headers (one wrapper, not two)."""
    starts, ends = timings.starts.append, timings.ends.append
    enqueued = timings.enqueued.append

    def run(message: Message) -> Any:
        enqueued(message.enqueued_at)
        starts(time())
        try:
            if gated and message.headers:
                return invoke(handler, message, gated, None)
            result = handler(message)
            if result is not None and isawaitable(result):
                return run_awaitable(result, None)  # inside the time it takes
            return result
        finally:
            ends(time())

    return run
