"""Registered handlers: what ``@relay.consumer`` and ``@relay.subscriber`` return."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._types import AsyncHandler as AsyncHandler
from ._types import Handler as Handler
from ._types import SyncHandler as SyncHandler
from .config import ConsumerOptions
from .errors import TimeLimitExceeded
from .message import Message

if TYPE_CHECKING:
    from .queue import Queue

__all__ = [
    "AsyncHandler",
    "Called",
    "Consumer",
    "EnvelopeHook",
    "Handler",
    "HandlerContext",
    "Subscriber",
    "SyncHandler",
    "acall_handler",
    "ainvoke",
    "call_handler",
    "from_handler",
    "handler_traceback",
    "invoke",
    "run_awaitable",
]

#: Builds a context manager that a handler runs inside (Flask's app context, Django's
#: connection hygiene ...). Registered with ``relay.add_handler_context()``.
HandlerContext = Callable[[Message], AbstractContextManager[Any]]

#: Sees every outgoing envelope as ``hook(kind, name, envelope)`` ("queue", "topic" or
#: "channel") before it is encoded, and may add headers (``envelope["h"]``). Registered
#: by appending to ``relay.envelope_hooks`` (tracing.instrument does).
EnvelopeHook = Callable[[str, str, dict[str, Any]], None]


def invoke(
    handler: Handler,
    message: Message,
    contexts: Sequence[HandlerContext],
    loop: asyncio.AbstractEventLoop | None,
) -> Any:
    """Run one handler inside the relay's handler contexts; the one place handlers are called.

    The worker runs ``async def`` handlers with :func:`ainvoke` on its event loop
    thread instead; an awaitable that still reaches here (a plain function returning
    one) runs to completion on ``loop``, else on a throwaway loop. Exceptions propagate
    to the caller; the handler's return value is returned (results, docs/results.md).
    """
    if not contexts:  # the hot path
        return _call(handler, message, loop)
    return _within(contexts, 0, handler, message, loop)


def _within(
    contexts: Sequence[HandlerContext],
    i: int,
    handler: Handler,
    message: Message,
    loop: asyncio.AbstractEventLoop | None,
) -> Any:
    """``contexts[i:]`` entered in order around the handler call: nested ``with``
    statements (what an ExitStack does, at a third of its cost per message)."""
    with contexts[i](message):
        if i + 1 < len(contexts):
            return _within(contexts, i + 1, handler, message, loop)
        return _call(handler, message, loop)


def _call(
    handler: Handler, message: Message, loop: asyncio.AbstractEventLoop | None
) -> Any:
    result = handler(message)
    if result is not None and inspect.isawaitable(result):
        return run_awaitable(result, loop)
    return result


def run_awaitable(
    result: Awaitable[Any], loop: asyncio.AbstractEventLoop | None
) -> Any:
    """What a plain function handler returned as an awaitable, run to completion on
    ``loop`` (else on a throwaway loop): see :func:`invoke`."""
    if loop is None:
        return asyncio.run(_await(result))
    return loop.run_until_complete(result)


#: What a handler call came to: (its return value, None) or (None, what it raised).
Called = tuple[Any, "BaseException | None"]


def call_handler(
    handler: Handler,
    message: Message,
    contexts: Sequence[HandlerContext],
    loop: asyncio.AbstractEventLoop | None = None,
) -> Called:
    """Run a handler: ``(value, None)``, or ``(None, what it raised)``.

    Every way a handler can end badly is a failure of that delivery, ``BaseException``
    included: a handler that calls ``sys.exit()`` or raises ``KeyboardInterrupt`` or
    ``GeneratorExit`` must not take its consumer thread down with it (issue 18). The
    worker never raises into a handler thread to stop it (signals reach the main thread
    only; ``TimeLimitExceeded`` is a failure too), so nothing here is the worker's own.
    Queues, topic groups, channel subscribers and the ``django.tasks`` backend all call
    handlers through this function or :func:`acall_handler`.
    """
    try:
        return invoke(handler, message, contexts, loop), None
    except BaseException as exc:  # noqa: B036 - see the docstring
        return None, from_handler(exc)


def from_handler(exc: BaseException) -> BaseException:
    """``exc`` with the leading frames of redrelay's own code (the worker's calls into
    the handler, and glue such as ``@relay.task``'s wrapper) cut from its traceback, so
    that log lines, dead letters and results show the app's code first (a one-line
    error had five frames of ``invoke`` and ``_within`` above it). An error raised in
    redrelay's frames themselves (``Reject`` from a wrapper, ``TimeLimitExceeded``)
    keeps its whole traceback."""
    exc.__traceback__ = handler_traceback(exc)
    return exc


def handler_traceback(exc: BaseException) -> TracebackType | None:
    """The traceback :func:`from_handler` gives ``exc``, without changing it."""
    tb = exc.__traceback__
    while tb is not None and _ours(tb.tb_frame.f_globals.get("__name__")):
        tb = tb.tb_next
    return tb if tb is not None else exc.__traceback__


def _ours(module: object) -> bool:
    return isinstance(module, str) and (
        module == "redrelay" or module.startswith("redrelay.")
    )


async def acall_handler(
    handler: Handler,
    message: Message,
    contexts: Sequence[HandlerContext],
    time_limit: float | None = None,
) -> Called:
    """:func:`call_handler` for the worker's event loop: (value, None) or (None, what
    the coroutine raised).

    The one exception that is not the handler's failure is the worker's own shutdown:
    the loop cancels the task (``task.cancelling()``), and the cancellation goes on.
    A ``CancelledError`` the handler raises by itself is a failure like any other (else
    its delivery would sit in flight under a live lease). Returning the exception,
    never raising it, also keeps ``SystemExit`` from stopping the event loop of every
    other handler.
    """
    try:
        return await ainvoke(handler, message, contexts, time_limit), None
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and _cancelling(task):
            raise
        return None, from_handler(exc)
    except BaseException as exc:  # noqa: B036 - see call_handler
        return None, from_handler(exc)


def _cancelling(task: asyncio.Task[Any]) -> bool:
    if sys.version_info >= (3, 11):
        return task.cancelling() > 0
    return True  # pragma: no cover - Python 3.10 cannot tell; assume the worker's


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def ainvoke(
    handler: Handler,
    message: Message,
    contexts: Sequence[HandlerContext],
    time_limit: float | None = None,
) -> Any:
    """:func:`invoke` for the worker's event loop: ``await`` the handler in its contexts.

    Each call runs in its own task (``run_coroutine_threadsafe``), so context variables
    set by a handler context (Flask's app context) are the task's own. Past
    ``time_limit`` the handler is cancelled and :class:`TimeLimitExceeded` raised: a
    coroutine, unlike a thread, can always be stopped at its next ``await``. What the
    handler raises propagates: the worker calls it through :func:`acall_handler`.
    """
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context(message))
        result = handler(message)
        if result is not None and inspect.isawaitable(result):
            if time_limit is None:
                return await result
            return await _limited(result, time_limit)
        return result


async def _limited(awaitable: Awaitable[Any], limit: float) -> Any:
    if sys.version_info >= (3, 11):
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                return await awaitable
        except TimeoutError as exc:
            if timeout.expired():  # not a TimeoutError of the handler's own
                raise TimeLimitExceeded(
                    f"the handler ran past its time limit ({limit:g}s)"
                ) from exc
            raise
    else:  # pragma: no cover - Python 3.10
        try:
            return await asyncio.wait_for(awaitable, limit)
        except asyncio.TimeoutError as exc:
            raise TimeLimitExceeded(
                f"the handler ran past its time limit ({limit:g}s)"
            ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Consumer:
    """A handler bound to a queue with its options. Calling it calls the handler."""

    queue: Queue
    handler: Handler
    options: ConsumerOptions

    @property
    def name(self) -> str:
        return self.queue.name

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)

    def put(self, body: Any, **options: Any) -> str:
        """Shortcut for ``relay.queue(name).put(body, ...)``."""
        return self.queue.put(body, **options)

    async def aput(self, body: Any, **options: Any) -> str:
        """Shortcut for ``await relay.queue(name).aput(body, ...)``."""
        return await self.queue.aput(body, **options)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """A handler bound to a channel name or a glob pattern."""

    channel: str
    pattern: bool
    handler: Handler
    #: Messages handled at once: coroutines in flight for an ``async def`` handler
    #: (1, the default, keeps publication order); always 1 for a plain function.
    concurrency: int = 1

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)
