"""Waiting for results, status and cancellation: the queue methods (a mixin of Queue).

``queue.result(id)`` never polls Redis and never consumes the result. Every waiter of a
process registers with one :class:`~redrelay.waiter.ResultWaiter` per relay, whose thread
holds one pub/sub connection subscribed to the ``done`` channel of each hash tag waited
on; complete.lua and bury.lua publish the finished ids there. A waiter subscribes first,
then reads the outcome once (its record, else the result buckets: one or two round
trips), so a message that finishes in between is read, and one that finishes later is
announced. See docs/results.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

from ._types import Duration
from .errors import ConfigurationError, ResultTimeout
from .protocol.keys import QueueKeys
from .protocol.requests import Plan
from .protocol.results import (
    Status,
    cancel_step,
    check_id,
    status_plan,
)
from .protocol.transitions import to_ms, to_seconds

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["DEFAULT_RESULT_TIMEOUT", "QueueResults", "Status"]

#: How long ``result()`` waits by default; ``timeout=None`` waits without a limit.
DEFAULT_RESULT_TIMEOUT = 60.0
#: TTL of the record of a cancelled delayed message when no consumer says (one day).
_CANCELLED_TTL = 86400.0


class QueueResults:
    """``result``, ``status`` and ``cancel`` of :class:`~redrelay.queue.Queue`."""

    relay: Relay
    name: str
    #: Whether puts through this queue create a record (tracked messages): set by a
    #: consumer declared with ``result_ttl=`` or by ``relay.queue(name, results=True)``.
    tracked: bool

    def _shard_keys_plan(self, register: bool) -> Plan[list[QueueKeys]]:
        raise NotImplementedError  # pragma: no cover - Queue defines it

    def _results_plan(self) -> Plan[QueueKeys]:
        shards = yield from self._shard_keys_plan(False)
        if len(shards) > 1:
            raise ConfigurationError(
                f"queue {self.name!r} is sharded: results, status and cancel are not "
                "supported on sharded queues yet"
            )
        return shards[0]

    def result(
        self, id: str, *, timeout: Duration | None = DEFAULT_RESULT_TIMEOUT
    ) -> Any:
        """Wait until message ``id`` finishes and return its handler's return value.

        The result stays in Redis (until the consumer's ``result_ttl``), so any number of
        callers may wait for it, before or after it finished. A Redis restart during the
        wait is ridden out: the wait resumes when Redis is back.

        :param id: what ``put()`` returned.
        :param timeout: seconds to wait (None: no limit).
        :raises JobFailed: the message died after its retries (class path, message and
            traceback of the last failure are attached).
        :raises JobCancelled: the message was cancelled.
        :raises ResultTimeout: it did not finish within ``timeout``.
        :raises ResultNotFound: no record of ``id``: unknown, expired, or untracked.
        """
        from .waiter import waiter_of

        msg_id = check_id(id)
        limit = _timeout(timeout)
        keys = self.relay.connection.drive(self._results_plan())
        deadline = None if limit is None else time.monotonic() + limit
        waiter = waiter_of(self.relay)
        future = waiter.register(self.name, keys, msg_id, deadline)
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return future.result(left)
        except concurrent.futures.TimeoutError:
            raise ResultTimeout(msg_id, limit or 0.0) from None
        finally:
            waiter.forget(msg_id, future)

    async def aresult(
        self, id: str, *, timeout: Duration | None = DEFAULT_RESULT_TIMEOUT
    ) -> Any:
        """:meth:`result` as a coroutine: the event loop is free while it waits, and every
        waiter of the process still shares one connection."""
        from .waiter import waiter_of

        msg_id = check_id(id)
        limit = _timeout(timeout)
        keys = await self.relay.aconnection.drive(self._results_plan())
        deadline = None if limit is None else time.monotonic() + limit
        waiter = waiter_of(self.relay)
        # Registering subscribes (first waiter of a tag) and reads once: off the loop.
        future = await asyncio.to_thread(
            waiter.register, self.name, keys, msg_id, deadline
        )
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return await asyncio.wait_for(asyncio.wrap_future(future), left)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            raise ResultTimeout(msg_id, limit or 0.0) from None
        finally:
            waiter.forget(msg_id, future)

    def status(self, id: str) -> Status:
        """Where message ``id`` is: queued, delayed, running, succeeded, failed, cancelled,
        or unknown (no record: an unknown id, an expired result, an untracked message)."""
        return self.relay.connection.drive(self._status_plan(check_id(id)))

    async def astatus(self, id: str) -> Status:
        """:meth:`status` as a coroutine."""
        return await self.relay.aconnection.drive(self._status_plan(check_id(id)))

    def _status_plan(self, msg_id: str) -> Plan[Status]:
        keys = yield from self._results_plan()
        return (yield from status_plan(keys, msg_id))

    def cancel(self, id: str) -> bool:
        """Cancel message ``id``; True if it was found queued, delayed or running.

        A queued or delayed message then never runs (a worker that takes it acks it
        unrun); a running one is asked to stop: its handler sees ``message.cancelled()``
        (or :class:`Cancelled` from ``message.raise_if_cancelled()``) within one
        heartbeat, and a handler that never checks runs to its end. The cancellation is
        stored in Redis, so it outlives worker restarts. False: unknown, or finished.
        """
        return self.relay.connection.drive(self._cancel_plan(check_id(id)))

    async def acancel(self, id: str) -> bool:
        """:meth:`cancel` as a coroutine."""
        return await self.relay.aconnection.drive(self._cancel_plan(check_id(id)))

    def _cancel_plan(self, msg_id: str) -> Plan[bool]:
        keys = yield from self._results_plan()
        consumer = self.relay.consumers.get(self.name)
        ttl = consumer.options.result_ttl if consumer is not None else None
        reply = yield cancel_step(keys, msg_id, to_ms(ttl or _CANCELLED_TTL))
        return int(reply) > 0


def _timeout(timeout: Duration | None) -> float | None:
    return None if timeout is None else to_seconds(timeout, "timeout")
