"""One subscriber of a :class:`~redrelay.listener.Listener`: its thread and bounded queue.

The listener thread only reads and sorts; each subscriber handles its messages on its
own thread (or, for ``async def`` handlers, as coroutines on an event loop thread), so
a slow handler never delays the others or the reading.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .handlers import HandlerContext, Subscriber, ainvoke, invoke
from .message import Message

if TYPE_CHECKING:
    from .worker.aioloop import Bounded, LoopThread

__all__: list[str] = []

log = logging.getLogger("redrelay.channel")

#: Messages waiting for one subscriber before new ones are dropped (and reported).
DEFAULT_QUEUE_SIZE = 1000

_STOP = object()


class _Worker:
    """One subscriber's thread and its bounded queue of messages."""

    def __init__(
        self,
        subscriber: Subscriber,
        queue_size: int,
        contexts: Sequence[HandlerContext] = (),
        bounded: Bounded | None = None,
    ) -> None:
        self.subscriber = subscriber
        #: For an async handler: its coroutines' bound on the event loop thread.
        self.bounded = bounded
        self.contexts = contexts
        self.queue_size = queue_size
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.errors = 0
        self.handled = 0
        #: Messages dropped and not reported yet, and when the first of them was.
        self.unreported_drops = 0
        self.drops_since = 0.0
        self.abandon = False
        kind = "pattern" if subscriber.pattern else "channel"
        self.thread = threading.Thread(
            target=self._run,
            name=f"redrelay-subscriber-{kind}-{subscriber.channel}",
            daemon=True,
        )

    def full(self) -> bool:
        """Whether a new message would be dropped. Only the listener thread queues
        messages, so a queue with room keeps it until the listener's next put."""
        return self.queue.qsize() >= self.queue_size

    def _run(self) -> None:
        bounded = self.bounded
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    return
                if self.abandon:
                    continue
                if bounded is None:
                    self._handle(item)
                    continue
                bounded.acquire()  # at most `concurrency` coroutines at once
                coro = ainvoke(self.subscriber.handler, item, self.contexts)
                bounded.submit(coro, functools.partial(self._done, item))
        finally:
            if bounded is not None:
                bounded.wait_all()  # Listener.stop() bounds this with its timeout

    def _done(self, message: Message, future: concurrent.futures.Future[Any]) -> None:
        """An async handler ended (on the loop thread)."""
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.errors += 1
            log.error(
                "subscriber %s of %r failed on message %s",
                getattr(
                    self.subscriber.handler, "__qualname__", self.subscriber.handler
                ),
                message.channel,
                message.id,
                exc_info=error,
            )
        self.handled += 1

    def _handle(self, message: Message) -> None:
        try:
            invoke(self.subscriber.handler, message, self.contexts, None)
        except Exception:
            self.errors += 1
            log.exception(
                "subscriber %s of %r failed on message %s",
                getattr(
                    self.subscriber.handler, "__qualname__", self.subscriber.handler
                ),
                message.channel,
                message.id,
            )
        self.handled += 1


def _bounded(aio: LoopThread | None, subscriber: Subscriber) -> Bounded | None:
    if aio is None or not subscriber.is_async:
        return None
    from .worker.aioloop import Bounded

    return Bounded(aio, subscriber.concurrency)
