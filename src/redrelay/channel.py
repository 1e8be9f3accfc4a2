"""Pub/sub channels: publishing. The subscribing side is :mod:`redrelay.listener`.

Channels are Redis ``PUBLISH``/``SUBSCRIBE``: every subscriber connected *now* gets a
message, nobody gets it later. That makes them at-most-once, so redrelay makes loss
visible instead of silent: every publisher stamps a sequence number per channel, and the
:class:`~redrelay.listener.Listener` reports a :class:`GapReport` when a number is
skipped (see there).

**Publishers and order.** A publisher is one thread of one :class:`~redrelay.Relay`
(for ``apublish``, one asyncio task): its id is ``<random relay id>.<number>``. A
thread's publishes reach Redis one after the other, so its sequence numbers arrive in
order; the publishes of two threads race, so one counter shared by the threads would
report gaps that are only reorderings.
Coroutines of one thread interleave and their publishes go out on different pooled
connections, so ``apublish`` numbers per task instead (a task awaits its publishes one
after the other). A failed publish does not use up its number. A forked process gets
new ids.

**Interop.** Another program can ``PUBLISH <namespace>:<channel> <bytes>``; the bytes
reach subscribers as a ``Message(raw=True, body=b"...")`` with a fresh id, and no
sequence checks apply.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .listener import GapReport, Listener
from .protocol.envelope import new_id
from .protocol.keys import channel_key, validate_name
from .protocol.transitions import check_headers

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["Channel", "GapReport", "Listener"]


# -- publishing ---------------------------------------------------------------------


class _Stream:
    """The publisher of one thread: its id and its last sequence number per channel."""

    __slots__ = ("epoch", "id", "seqs")

    def __init__(self, publisher_id: str, epoch: int) -> None:
        self.id = publisher_id
        self.epoch = epoch
        self.seqs: dict[str, int] = {}


class _Publisher:
    """Per-relay publisher state: a random id, and one :class:`_Stream` per thread."""

    def __init__(self) -> None:
        self.local = threading.local()
        #: apublish's streams, one per asyncio task (weakly: tasks come and go).
        self.tasks: weakref.WeakKeyDictionary[asyncio.Task[Any], _Stream] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._epoch = -1
        self._id = ""
        self._threads = 0

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def new_stream(self) -> _Stream:
        """A stream for the calling thread (a forked child gets new ids and counters)."""
        stream = self._make_stream()
        self.local.stream = stream
        return stream

    def task_stream(self, task: asyncio.Task[Any]) -> _Stream:
        """The stream of an asyncio task, created on its first ``apublish``."""
        with self._lock:
            stream = self.tasks.get(task)
        if stream is None or stream.epoch != _fork_epoch:
            stream = self._make_stream()
            with self._lock:
                self.tasks[task] = stream
        return stream

    def _make_stream(self) -> _Stream:
        with self._lock:
            if self._epoch != _fork_epoch:
                self._epoch, self._id, self._threads = (
                    _fork_epoch,
                    secrets.token_hex(6),
                    0,
                )
            self._threads += 1
            return _Stream(f"{self._id}.{self._threads}", self._epoch)


_publishers: weakref.WeakKeyDictionary[Relay, _Publisher] = weakref.WeakKeyDictionary()
_publishers_lock = threading.Lock()
#: Bumped in a forked child, so that it does not continue its parent's sequences;
#: cheaper on the publish path than comparing ``os.getpid()``.
_fork_epoch = 0
_fork_hook = False


def _after_fork_in_child() -> None:
    # The child has one thread: locks held by the parent's other threads at the fork
    # would never be released, so replace them rather than acquire them.
    global _fork_epoch, _publishers_lock
    _fork_epoch += 1
    _publishers_lock = threading.Lock()
    for publisher in list(_publishers.values()):
        publisher.reset_lock()


def _publisher_of(relay: Relay) -> _Publisher:
    global _fork_hook
    with _publishers_lock:
        if not _fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook = True
        publisher = _publishers.get(relay)
        if publisher is None:
            publisher = _publishers[relay] = _Publisher()
        return publisher


class Channel:
    """A named pub/sub channel; get one with ``relay.channel(name)``. Holds no socket.

    Example::

        relay.channel("prices").publish({"sym": "ACME", "bid": 12.5})

    :param relay: the relay whose connection, namespace and codec are used.
    :param name: the channel name; the Redis channel is ``<namespace>:<name>``.
    :raises InvalidName: when ``name`` is not a valid channel name.
    """

    def __init__(self, relay: Relay, name: str) -> None:
        self.relay = relay
        self.name = validate_name("channel", name)
        #: The Redis channel.
        self.key = channel_key(relay.namespace, name)
        self._publisher: _Publisher | None = None

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} namespace={self.relay.namespace!r}>"

    def _stream(self) -> _Stream:
        """The calling thread's publisher stream (``publish`` inlines this)."""
        publisher = self._publisher or self._bind()
        stream: _Stream | None = getattr(publisher.local, "stream", None)
        if stream is None or stream.epoch != _fork_epoch:
            stream = publisher.new_stream()
        return stream

    def _bind(self) -> _Publisher:
        self._publisher = _publisher_of(self.relay)
        return self._publisher

    def publish(self, body: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Send ``body`` to every subscriber connected now; return how many got it.

        One ``PUBLISH``: one round trip. The count is Redis's (subscribed connections,
        pattern matches included), not a delivery guarantee.

        :param body: a value the relay's codec can encode (JSON-compatible by default).
        :param headers: string headers carried with the message.
        :raises EncodeError: the codec cannot encode ``body``; nothing was published.
        :raises MessageTooLarge: the encoded message is over ``max_message_size``;
            nothing was published.
        :raises BrokerUnavailable: Redis did not answer after bounded retries.
        """
        publisher = self._publisher or self._bind()
        stream: _Stream | None = getattr(publisher.local, "stream", None)
        if stream is None or stream.epoch != _fork_epoch:
            stream = publisher.new_stream()
        seq, entry = self._prepare(stream, body, headers)
        receivers = self.relay.connection.publish(self.key, entry)
        # Only now: a publish that raised gives its number to the next one, so a
        # subscriber never sees a gap for a message the caller knows was not sent.
        stream.seqs[self.key] = seq
        return int(receivers)

    async def apublish(
        self, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> int:
        """:meth:`publish` as a coroutine (same arguments, errors and result).

        Sequence numbers are kept per asyncio task (see the module docstring).
        """
        publisher = self._publisher or self._bind()
        task = asyncio.current_task()
        stream = publisher.task_stream(task) if task is not None else self._stream()
        seq, entry = self._prepare(stream, body, headers)
        receivers = await self.relay.aconnection.publish(self.key, entry)
        stream.seqs[self.key] = seq
        return int(receivers)

    def _prepare(
        self, stream: _Stream, body: Any, headers: Mapping[str, str] | None
    ) -> tuple[int, bytes]:
        """The next sequence number and the entry to publish (checked and encoded)."""
        seq = stream.seqs.get(self.key, 0) + 1
        envelope: dict[str, Any] = {
            "i": new_id(),
            "b": body,
            "t": time.time_ns() // 1_000_000,
            "p": stream.id,
            "s": seq,
        }
        if headers:
            envelope["h"] = check_headers(headers)
        return seq, self.relay.encode_envelope(envelope, ("channel", self.name))
