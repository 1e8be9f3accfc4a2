"""Tasks: call a function later, on a worker, and get its result (``@relay.task``).

A thin layer over queues for those who prefer calling functions to putting messages:
``@relay.task(queue="reports", result_ttl=3600)`` registers a consumer of that queue
(same leases, retries, dead letters) whose handler calls the function with the
arguments of the message body ``{"args": [...], "kwargs": {...}}``, and stores its
return value. ``fn.delay(*args, **kwargs)`` puts such a message and returns a
:class:`TaskHandle`. Arguments go through the relay's codec, so a value it cannot encode
fails at the call (:class:`EncodeError`), with nothing written, and so do arguments
that the function's signature does not accept (:class:`ConfigurationError`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._types import Duration
from .errors import ConfigurationError
from .message import Message
from .protocol.results import Status

if TYPE_CHECKING:
    from .queue import Queue
    from .relay import Relay

__all__ = ["DEFAULT_TASK_RESULT_TTL", "Task", "TaskHandle"]

P = ParamSpec("P")
R = TypeVar("R")

#: Seconds a task's result is kept unless ``result_ttl=`` says otherwise (one day).
DEFAULT_TASK_RESULT_TTL = 86400.0


@dataclass(frozen=True, slots=True)
class TaskHandle(Generic[R]):
    """A task call that was put on its queue: its id, and how to wait for it."""

    id: str
    queue: Queue

    def result(self, timeout: Duration | None = 60.0) -> R:
        """Wait for the return value (see :meth:`Queue.result` for the errors)."""
        value: R = self.queue.result(self.id, timeout=timeout)
        return value

    async def aresult(self, timeout: Duration | None = 60.0) -> R:
        """:meth:`result` as a coroutine."""
        value: R = await self.queue.aresult(self.id, timeout=timeout)
        return value

    def status(self) -> Status:
        """Queued, delayed, running, succeeded, failed, cancelled or unknown."""
        return self.queue.status(self.id)

    def cancel(self) -> bool:
        """Cancel the call (see :meth:`Queue.cancel`); True if it was found pending."""
        return self.queue.cancel(self.id)


class Task(Generic[P, R]):
    """A function registered with ``@relay.task``. Calling it calls the function here."""

    def __init__(self, relay: Relay, fn: Callable[P, R], queue: Queue) -> None:
        self.relay = relay
        self.fn = fn
        self.queue = queue
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # a callable without one: not checked
            self._signature = None
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.fn.__qualname__} queue={self.queue.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Put a call with these arguments on the task's queue; returns its handle."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """:meth:`delay` as a coroutine."""
        msg_id = await self.queue.aput(self._body(args, kwargs))
        return TaskHandle(msg_id, self.queue)

    def _body(
        self, args: Sequence[Any], kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The message body; arguments that the function would refuse fail here, in
        the caller, not later in a worker as a dead letter."""
        body = _body(args, kwargs)
        if self._signature is not None:
            try:
                self._signature.bind(*body["args"], **body["kwargs"])
            except TypeError as exc:
                bare = self._signature.replace(
                    parameters=[
                        p.replace(annotation=p.empty)
                        for p in self._signature.parameters.values()
                    ],
                    return_annotation=inspect.Signature.empty,
                )
                raise ConfigurationError(
                    f"task {self.fn.__qualname__}{bare}: {exc}; nothing was put"
                ) from None
        return body

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TaskHandle[R]:
        """Put a call, with options: ``delay=``/``eta=`` run it later, ``priority=``
        (where the queue supports priorities), ``headers=`` travel with the message."""
        options: dict[str, Any] = {"delay": delay, "eta": eta, "headers": headers}
        if priority is not None:
            options["priority"] = priority
        msg_id = self.queue.put(self._body(args, kwargs), **options)
        return TaskHandle(msg_id, self.queue)


def _body(args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigurationError(
            f"args= must be a list or tuple of arguments, got {type(args).__name__}"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ConfigurationError(
            f"kwargs= must be a dict of keyword arguments, got {type(kwargs).__name__}"
        )
    return {"args": list(args), "kwargs": dict(kwargs or {})}


def make_task(
    relay: Relay, fn: Callable[P, R], queue: str | None, options: dict[str, Any]
) -> Task[P, R]:
    """Register ``fn``'s consumer on ``relay`` and return its :class:`Task`."""
    if not callable(fn):
        raise ConfigurationError("@relay.task must decorate a function")
    name = queue or f"{fn.__module__}.{fn.__qualname__}"
    if queue is None and "<" in name:
        raise ConfigurationError(
            f"@relay.task on {fn.__qualname__!r}: a nested function has no stable "
            "name; pass queue="
        )
    options.setdefault("result_ttl", DEFAULT_TASK_RESULT_TTL)
    if inspect.iscoroutinefunction(fn):

        async def run_async(message: Message) -> Any:
            body = _arguments(message)
            return await fn(*body["args"], **body["kwargs"])

        relay.consumer(name, **options)(run_async)
    else:

        def run(message: Message) -> Any:
            body = _arguments(message)
            return fn(*body["args"], **body["kwargs"])

        relay.consumer(name, **options)(run)
    return Task(relay, fn, relay.queue(name))


def _arguments(message: Message) -> dict[str, Any]:
    body = message.body
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("args"), list)
        or not isinstance(body.get("kwargs"), dict)
    ):
        # Not a task call (a plain put on the task's queue): dead-letter it, with why.
        from .errors import Reject

        raise Reject(
            'not a task call: the body must be {"args": [...], "kwargs": {...}}'
        )
    return body
