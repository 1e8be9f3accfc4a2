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

from .failures import Failure, report_failure
from .handlers import HandlerContext, Subscriber, acall_handler, call_handler
from .message import Message

if TYPE_CHECKING:
    from .relay import Relay
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
        relay: Relay,
        subscriber: Subscriber,
        queue_size: int,
        contexts: Sequence[HandlerContext] = (),
        bounded: Bounded | None = None,
    ) -> None:
        self.relay = relay
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
        #: Told to stop (``_STOP``); what ended the thread otherwise (see ``revive``).
        self.stopped = False
        self.error: BaseException | None = None
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
        try:
            self._loop()
        except BaseException as exc:  # noqa: B036 - the listener logs it, replaces us
            self.error = exc

    def dead(self) -> bool:
        """The thread ended without being told to (an error outside any handler)."""
        started = self.thread.ident is not None
        return started and not self.stopped and not self.thread.is_alive()

    def revive(self) -> None:
        """Log the thread's end at ERROR and start another on the same queue."""
        error, self.error = self.error, None
        log.error(
            "subscriber thread %s died%s; starting a new one (its queue is kept)",
            self.thread.name,
            f" ({type(error).__name__}: {error})" if error is not None else "",
            exc_info=error,
        )
        self.thread = threading.Thread(
            target=self._run, name=self.thread.name, daemon=True
        )
        self.thread.start()

    def _loop(self) -> None:
        bounded = self.bounded
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    self.stopped = True
                    return
                if self.abandon:
                    continue
                if bounded is None:
                    self._handle(item)
                    continue
                bounded.acquire()  # at most `concurrency` coroutines at once
                coro = acall_handler(self.subscriber.handler, item, self.contexts)
                bounded.submit(coro, functools.partial(self._done, item))
        finally:
            if bounded is not None:
                bounded.wait_all()  # Listener.stop() bounds this with its timeout

    def _done(self, message: Message, future: concurrent.futures.Future[Any]) -> None:
        """An async handler ended (on the loop thread)."""
        if future.cancelled():
            return
        error = future.exception()
        self._ended(message, error if error is not None else future.result()[1])

    def _handle(self, message: Message) -> None:
        _, error = call_handler(self.subscriber.handler, message, self.contexts)
        self._ended(message, error)

    def _ended(self, message: Message, error: BaseException | None) -> None:
        """Count a handler call; report its failure (any BaseException, as for queues:
        :mod:`redrelay.failures`). The subscriber thread goes on either way."""
        self.handled += 1
        if error is None:
            return
        self.errors += 1
        sub = self.subscriber
        failure = Failure(
            kind="channel", name=message.channel or sub.channel, message=message,
            error=error, attempt=1,
        )  # fmt: skip
        report_failure(self.relay, failure)


def _bounded(aio: LoopThread | None, subscriber: Subscriber) -> Bounded | None:
    if aio is None or not subscriber.is_async:
        return None
    from .worker.aioloop import Bounded

    return Bounded(aio, subscriber.concurrency)
