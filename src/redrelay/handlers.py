"""Registered handlers: what ``@relay.consumer`` and ``@relay.subscriber`` return."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._types import Handler
from .config import ConsumerOptions

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["Consumer", "Subscriber"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """A handler bound to a channel name or a glob pattern."""

    channel: str
    pattern: bool
    handler: Handler

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)
