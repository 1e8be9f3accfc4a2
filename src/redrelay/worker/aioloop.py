"""Async handlers: one event loop thread per worker, and batches that run on it.

Sync handlers run on their consumer threads, one message at a time per thread. An
``async def`` handler with ``concurrency=50`` runs up to 50 coroutines at once on **one**
loop thread (:class:`LoopThread`), not on 50 threads.

The fetch, lease, ack and retry code is the sync one, on the consumer's fetching
thread; :mod:`redrelay.worker.aiobatch` starts a fetched batch's handlers on the loop
(one hand-off per batch) and settles their outcomes on the fetching thread. The loop only runs
handlers; it does no Redis I/O of redrelay's own. Channel subscribers use the same
loop and :class:`Bounded` (see :mod:`redrelay.listener`).

Time limits: ``asyncio.timeout`` around each coroutine (:func:`~redrelay.handlers.ainvoke`),
so a coroutine past its limit is cancelled at its next ``await`` and fails with
:class:`TimeLimitExceeded`. A coroutine that blocks the loop (a sync call inside
``async def``) stalls every coroutine of the process, as in any asyncio program.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..handlers import Called

if TYPE_CHECKING:
    from ..handlers import Consumer
    from ..topic import TopicSubscription

__all__ = ["Bounded", "Ended", "LoopThread", "ended", "error_of", "fetchers"]

log = logging.getLogger("redrelay.worker")

Future = concurrent.futures.Future[Any]


class LoopThread:
    """An event loop running on a thread of its own, for coroutines sent from others.

    Stopping it cancels what still runs and shuts down async generators (which closes
    the loop's ``redis.asyncio`` clients, see :mod:`redrelay.io.aio`).
    """

    def __init__(self, name: str = "redrelay-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            gather = asyncio.gather(*tasks, return_exceptions=True)
            self.loop.run_until_complete(gather)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future:
        """Run ``coro`` on the loop; a future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling what still runs) and join its thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


class Bounded:
    """At most ``limit`` coroutines of one handler in flight on a :class:`LoopThread`."""

    def __init__(self, aio: LoopThread, limit: int) -> None:
        self.aio = aio
        self.limit = limit
        self._permits = threading.Semaphore(limit)

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a free permit (the caller then must :meth:`submit` or :meth:`release`)."""
        return self._permits.acquire(timeout=timeout)

    def release(self) -> None:
        self._permits.release()

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Future], None] | None = None,
    ) -> Future:
        """Run ``coro`` under an acquired permit; the permit returns when it ends."""
        future = self.aio.submit(coro)

        def done(fut: Future) -> None:
            self._permits.release()
            if on_done is not None:
                on_done(fut)

        future.add_done_callback(done)
        return future

    def acquire_more(self, count: int) -> int:
        """Take up to ``count`` more free permits without waiting; how many were taken."""
        taken = 0
        while taken < count and self._permits.acquire(blocking=False):
            taken += 1
        return taken

    def submit_many(
        self,
        items: list[tuple[str, Coroutine[Any, Any, Any]]],
        on_done: Callable[[str, asyncio.Task[Any]], None],
    ) -> None:
        """Run each ``(key, coro)`` as a task under an acquired permit, all handed to the
        loop in one call; ``on_done(key, task)`` runs on the loop thread as each ends."""
        loop, permits = self.aio.loop, self._permits

        def done(key: str, task: asyncio.Task[Any]) -> None:
            permits.release()
            on_done(key, task)

        def spawn() -> None:
            for key, coro in items:
                task = loop.create_task(coro)
                task.add_done_callback(functools.partial(done, key))

        loop.call_soon_threadsafe(spawn)

    def submit_chain(
        self,
        items: list[tuple[str, Coroutine[Any, Any, Any]]],
        on_done: Callable[[str, Ended | None], None],
        claim: Callable[[str], bool],
    ) -> None:
        """Run the ``(key, coro)`` one after the other under one acquired permit, in one
        task handed to the loop in one call: ``concurrency=1`` without a thread hand-off
        (nor a task, nor a turn of the loop) per message; the handlers share the chain's
        context, as a thread's handlers share the thread's. Each starts only if
        ``claim(key)`` (its delivery is still unstarted, not given back meanwhile); else
        ``on_done(key, None)``."""
        loop, permits = self.aio.loop, self._permits

        async def chain() -> None:
            pending = iter(items)
            try:
                for key, coro in pending:
                    if not claim(key):
                        coro.close()
                        on_done(key, None)
                        continue
                    # acall_handler returns what the handler raised; it raises only
                    # when the chain itself is cancelled (shutdown).
                    on_done(key, Ended(await coro))
            finally:
                for _, coro in pending:  # cancelled at shutdown: never started
                    coro.close()
                permits.release()

        loop.call_soon_threadsafe(loop.create_task, chain())

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight (or ``timeout``); True if nothing is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        taken = 0
        try:
            while taken < self.limit:
                left = (
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                )
                if not self._permits.acquire(timeout=left):
                    return False
                taken += 1
            return True
        finally:
            for _ in range(taken):
                self._permits.release()


class Ended:
    """A handler of a chain that ended: what :func:`~redrelay.handlers.acall_handler`
    returned, ``(value, None)`` or ``(None, what it raised)``, as a done future gives it."""

    __slots__ = ("called",)

    def __init__(self, called: Called) -> None:
        self.called = called

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return None

    def result(self) -> Called:
        return self.called


def ended(future: Future | asyncio.Task[Any] | Ended) -> Called:
    """What a finished (not cancelled) :func:`~redrelay.handlers.acall_handler`
    coroutine came to: (value, None), or (None, any ``BaseException`` the handler
    raised, ``SystemExit`` included, with its class and traceback)."""
    error = future.exception()
    if error is not None:
        return None, error
    called: Called = future.result()
    return called


def error_of(future: Future | asyncio.Task[Any] | Ended) -> BaseException | None:
    """What a finished (not cancelled) handler coroutine failed with, else None."""
    return ended(future)[1]


def fetchers(consumer: Consumer | TopicSubscription) -> int:
    """Fetching threads of a consumer or topic subscriber: ``concurrency`` for sync
    handlers; for async ones, enough batches to fill ``concurrency`` coroutines, plus
    one fetching while another waits on the tail of its batch."""
    opts = consumer.options
    if not consumer.is_async:
        return opts.concurrency
    if opts.concurrency == 1:
        return 1
    return math.ceil(opts.concurrency / opts.prefetch) + 1
