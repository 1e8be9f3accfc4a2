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
import collections
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
    """At most ``limit`` coroutines of one handler in flight on a :class:`LoopThread`.

    Two ways in. A thread that holds a permit (:meth:`acquire`) hands one coroutine over
    (:meth:`submit`, :meth:`start`). Or a thread hands a whole batch over at once, ahead
    of free permits (:meth:`feed`): the loop keeps it in a backlog and starts each
    coroutine, in order, as soon as a permit comes free, right where the previous one
    ended: no thread hand-off per message, and no slot idle while a thread wakes up.
    A thread waiting in :meth:`acquire` goes before the backlog.
    """

    def __init__(self, aio: LoopThread, limit: int) -> None:
        self.aio = aio
        self.limit = limit
        self._permits = threading.Semaphore(limit)
        #: Fed coroutines not started yet: (key, coro, claim, on_done); the loop pops them.
        self._backlog: collections.deque[_Fed] = collections.deque()
        #: Threads waiting in acquire(): the loop leaves freed permits to them.
        self._waiters = 0
        self._waiters_lock = threading.Lock()
        #: (limit 1) a chain task is taking the backlog's coroutines one after another.
        self._chained = False

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a free permit (the caller then must :meth:`submit` or :meth:`release`)."""
        if self._permits.acquire(blocking=False):
            return True
        with self._waiters_lock:
            self._waiters += 1
        try:
            return self._permits.acquire(timeout=timeout)
        finally:
            with self._waiters_lock:
                self._waiters -= 1
            if self._backlog:  # it may have held back the loop for nothing
                self.aio.loop.call_soon_threadsafe(self._pump)

    def release(self) -> None:
        self._permits.release()
        if self._backlog:
            self.aio.loop.call_soon_threadsafe(self._pump)

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[Future], None] | None = None,
    ) -> Future:
        """Run ``coro`` under an acquired permit; the permit returns when it ends."""
        future = self.aio.submit(coro)

        def done(fut: Future) -> None:
            self.release()
            if on_done is not None:
                on_done(fut)

        future.add_done_callback(done)
        return future

    def start(
        self,
        key: str,
        coro: Coroutine[Any, Any, Any],
        on_done: Callable[[str, asyncio.Task[Any]], None],
    ) -> None:
        """Run ``coro`` as a task under an acquired permit; ``on_done(key, task)`` runs on
        the loop thread when it ends (and the permit goes to the backlog, if any)."""
        loop = self.aio.loop

        def spawn() -> None:
            task = loop.create_task(coro)
            task.add_done_callback(functools.partial(self._ended, key, on_done))

        loop.call_soon_threadsafe(spawn)

    def feed(
        self,
        items: list[tuple[str, Coroutine[Any, Any, Any]]],
        on_done: Callable[[str, asyncio.Task[Any] | Ended | None], None],
        claim: Callable[[str], bool],
    ) -> None:
        """Hand the ``(key, coro)`` to the loop in one call, to start in order as permits
        come free, without holding one now. Each starts only if ``claim(key)`` (its
        delivery was not given back meanwhile), else it is closed and ``on_done(key,
        None)``; when it ends, ``on_done(key, task)`` on the loop thread. With
        ``limit=1`` they run one after the other in one chain task (no task nor turn of
        the loop per message; they share the chain's context, as a thread's handlers
        share the thread's), and ``on_done(key, Ended)``."""
        self._backlog.extend([(key, coro, claim, on_done) for key, coro in items])
        if self.limit == 1 and self._chained:
            return  # the running chain takes them (else it pumps as it ends, see _chain)
        self.aio.loop.call_soon_threadsafe(self._pump)

    def _pump(self) -> None:
        """On the loop: start what the backlog holds, as far as permits allow."""
        backlog, permits, loop = self._backlog, self._permits, self.aio.loop
        if self.limit == 1:
            if backlog and not self._chained and not self._waiters:
                if permits.acquire(blocking=False):
                    self._chained = True
                    loop.create_task(self._chain())
            return
        while backlog and not self._waiters and permits.acquire(blocking=False):
            key, coro, claim, on_done = backlog.popleft()
            if not claim(key):
                coro.close()
                permits.release()
                on_done(key, None)
                continue
            task = loop.create_task(coro)
            task.add_done_callback(functools.partial(self._ended, key, on_done))

    def _ended(
        self,
        key: str,
        on_done: Callable[[str, asyncio.Task[Any]], None],
        task: asyncio.Task[Any],
    ) -> None:
        on_done(key, task)
        # The freed permit starts the next fed coroutine here, on the loop: handed on
        # as it is, unless a thread waits for one (or with limit 1: a chain takes it).
        backlog, loop = self._backlog, self.aio.loop
        while backlog and not self._waiters and self.limit > 1:
            key, coro, claim, done = backlog.popleft()
            if claim(key):
                task = loop.create_task(coro)
                task.add_done_callback(functools.partial(self._ended, key, done))
                return
            coro.close()
            done(key, None)
        self._permits.release()
        if backlog:
            self._pump()

    async def _chain(self) -> None:
        """(limit 1) Take the backlog's coroutines one after the other under the one
        permit, until it is empty or a thread waits for the permit."""
        backlog = self._backlog
        try:
            while backlog and not self._waiters:
                key, coro, claim, on_done = backlog.popleft()
                if not claim(key):
                    coro.close()
                    on_done(key, None)
                    continue
                # acall_handler returns what the handler raised; it raises only when
                # the chain itself is cancelled (shutdown).
                on_done(key, Ended(await coro))
        except asyncio.CancelledError:
            while backlog:  # shutdown: never started
                backlog.popleft()[1].close()
            raise
        finally:
            self._chained = False
            self._permits.release()
        if backlog:
            self._pump()

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


#: A fed coroutine: (key, coroutine, claim, on_done), see :meth:`Bounded.feed`.
_Fed = tuple[
    str,
    Coroutine[Any, Any, Any],
    Callable[[str], bool],
    Callable[[str, "asyncio.Task[Any] | Ended | None"], None],
]


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
