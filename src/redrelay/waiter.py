"""One thread and one pub/sub connection per relay and process, for every result waiter.

Waiters (threads, or coroutines through ``asyncio.to_thread``) :meth:`ResultWaiter.register`
a message id and get a ``concurrent.futures.Future``. The thread subscribes to the ``done``
channel of each hash tag waited on (once per tag, however many ids), and on each
announcement reads the outcomes of the ids that have waiters (one or two pipelines per
queue, see :func:`~redrelay.protocol.results.outcomes_plan`) on its one command
connection: a thousand waiters cost two connections, not a thousand (the fault of
result backends that open a subscription per waiter, celery#3808).

When the pub/sub connection drops (a Redis restart, a network cut) the thread reconnects
with backoff, subscribes again, then reads every pending record, so an announcement made
while it was away is not missed: waits ride out the restart instead of hanging
(celery#4857). A half-open connection is found by a PING that gets no answer.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RedrelayError
from .io.sync import translate
from .protocol.keys import QueueKeys
from .protocol.results import decode_outcome, outcomes_plan

if TYPE_CHECKING:
    from .io.sync import Connection
    from .relay import Relay

__all__ = ["ResultWaiter", "waiter_of"]

log = logging.getLogger("redrelay.results")

Future = concurrent.futures.Future[Any]

#: Seconds the thread waits on the socket before looking at new subscriptions. Local
#: only: Redis is never polled (it pushes the announcements).
TICK = 0.05
#: Idle seconds before a PING checks the connection; seconds its reply may take.
PING_INTERVAL, PING_TIMEOUT = 5.0, 5.0

_waiters: weakref.WeakKeyDictionary[Relay, ResultWaiter] = weakref.WeakKeyDictionary()
_waiters_lock = threading.Lock()


def waiter_of(relay: Relay) -> ResultWaiter:
    """The relay's waiter in this process (a new one after a fork)."""
    with _waiters_lock:
        waiter = _waiters.get(relay)
        if waiter is None or waiter.pid != os.getpid():
            waiter = _waiters[relay] = ResultWaiter(relay)
        return waiter


@dataclass(slots=True)
class _Wait:
    queue: str
    keys: QueueKeys
    futures: list[Future]


class _Lost(Exception):
    """The pub/sub connection is gone or silent."""


class ResultWaiter:
    """Every result wait of one relay in this process (see the module docstring)."""

    def __init__(self, relay: Relay) -> None:
        # Weakly: the relays' registry of waiters must not keep a dropped relay alive.
        self._relay = weakref.ref(relay)
        self.pid = os.getpid()
        self._lock = threading.Condition()
        #: message id -> its waits.
        self._waits: dict[str, _Wait] = {}
        #: done channel -> whether the current session confirmed the subscription.
        self._channels: dict[str, bool] = {}
        self._thread: threading.Thread | None = None
        self._reader: Connection | None = None
        self._read_lock = threading.Lock()
        #: Sessions started (the first one is not a reconnect).
        self.sessions = 0

    # -- waiters' side ---------------------------------------------------------------------

    def register(
        self, queue: str, keys: QueueKeys, msg_id: str, deadline: float | None
    ) -> Future:
        """A future of the outcome of ``msg_id``; :meth:`forget` it when done waiting.

        Subscribes to the tag's channel first (waiting for the confirmation until
        ``deadline``), then reads the record once.
        """
        future: Future = concurrent.futures.Future()
        with self._lock:
            self._start()
            self._channels.setdefault(keys.done, False)
            wait = self._waits.get(msg_id)
            if wait is None:
                wait = self._waits[msg_id] = _Wait(queue, keys, [])
            wait.futures.append(future)
            while not self._channels.get(keys.done):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break  # not subscribed in time: read once all the same
                self._lock.wait(left)
        try:
            self._read([msg_id])
        except RedrelayError:
            # Redis went away after the subscription: the thread reads every pending
            # record when it subscribes again.
            log.debug("result of %s: first read failed; waiting on", msg_id)
        return future

    def forget(self, msg_id: str, future: Future) -> None:
        """Stop waiting with ``future`` (done, timed out or abandoned)."""
        with self._lock:
            wait = self._waits.get(msg_id)
            if wait is not None and future in wait.futures:
                wait.futures.remove(future)
                if not wait.futures:
                    del self._waits[msg_id]

    def pending(self) -> int:
        """Ids waited on now."""
        with self._lock:
            return len(self._waits)

    # -- reading records -------------------------------------------------------------------

    def _read(self, ids: list[str]) -> None:
        """Read the records of ``ids`` (those still waited on) and settle the finished."""
        with self._lock:
            wanted = [(i, self._waits[i]) for i in ids if i in self._waits]
        if not wanted:
            return
        by_queue: dict[str, list[tuple[str, _Wait]]] = {}
        for msg_id, wait in wanted:
            by_queue.setdefault(wait.keys.prefix, []).append((msg_id, wait))
        replies: list[tuple[str, _Wait, list[Any]]] = []
        with self._read_lock:
            if self._reader is None:
                self._reader = self._live().new_connection(retries=3)
            for group in by_queue.values():
                keys = group[0][1].keys
                got = self._reader.drive(outcomes_plan(keys, [i for i, _ in group]))
                replies += [(i, w, r) for (i, w), r in zip(group, got, strict=True)]
        for msg_id, wait, reply in replies:
            try:
                done, value = decode_outcome(wait.queue, msg_id, reply)
            except Exception as exc:  # JobFailed, JobCancelled, ResultNotFound ...
                self._settle(msg_id, None, exc)
            else:
                if done:
                    self._settle(msg_id, value, None)

    def _settle(self, msg_id: str, value: Any, error: BaseException | None) -> None:
        with self._lock:
            wait = self._waits.pop(msg_id, None)
        for future in wait.futures if wait is not None else ():
            if future.done():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    # -- the thread ------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="redrelay-results", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._closed():
            try:
                self._session()
                attempt = 0
            except (_Lost, RedrelayError, OSError) as exc:
                if self._closed():
                    break
                log.warning("result waiter: connection lost (%s); reconnecting", exc)
            except Exception:
                log.exception("result waiter: unexpected error; reconnecting")
            with self._lock:
                for channel in self._channels:
                    self._channels[channel] = False
            delay = min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            time.sleep(delay)
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()

    def _live(self) -> Relay:
        relay = self._relay()
        if relay is None:
            raise _Lost("the relay was dropped")
        return relay

    def _closed(self) -> bool:
        from .relay import RelayState

        relay = self._relay()
        return relay is None or relay.state is RelayState.CLOSED

    def _session(self) -> None:
        conn = self._live().new_connection(retries=0, socket_timeout=PING_TIMEOUT)
        raw: Any = None
        try:
            with translate(conn.url):
                raw = conn.subscriber_connection(self.sessions)
                raw.connect()
            self.sessions += 1
            self._listen(conn.url, raw)
        finally:
            if raw is not None:
                raw.disconnect()
            conn.close()

    def _listen(self, url: str, raw: Any) -> None:
        sent: set[str] = set()
        last_read, ping_sent = time.monotonic(), None
        while not self._closed():
            with self._lock:
                new = [c for c in self._channels if c not in sent]
            if new:
                with translate(url):
                    raw.send_command("SUBSCRIBE", *new, check_health=False)
                sent.update(new)
            with translate(url):
                reply = raw.read_response() if raw.can_read(timeout=TICK) else None
            now = time.monotonic()
            if reply is not None:
                last_read, ping_sent = now, None
                self._on_reply(reply)
            elif ping_sent is not None and now - ping_sent > PING_TIMEOUT:
                raise _Lost(f"no reply to PING within {PING_TIMEOUT:g} s")
            elif ping_sent is None and now - last_read > PING_INTERVAL:
                with translate(url):
                    raw.send_command("PING", check_health=False)
                ping_sent = now

    def _on_reply(self, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message":
            self._read(reply[2].decode().split())
        elif kind == b"subscribe":
            channel = reply[1].decode()
            with self._lock:
                self._channels[channel] = True
                ids = [i for i, w in self._waits.items() if w.keys.done == channel]
                self._lock.notify_all()
            # Announcements made before this subscription (while reconnecting) were
            # missed: read every record waited on under this tag.
            if ids and self.sessions > 1:
                self._read(ids)
