"""The worker side of results and cancellation, for consumers declared with ``result_ttl=``.

Such a consumer never acks on its fetch (fetch.lua knows nothing of results): each
finished delivery waits here with its outcome, and :meth:`Tracker.complete` acks and
writes them in one complete.lua call, so a result never exists without its ack (or the
reverse). Before a fetched batch runs, :meth:`Tracker.start` marks its messages running
and learns which were cancelled while queued (they are acked without running), in the
same call that completes the previous batch: one round trip per batch. The
keeper thread calls :meth:`Tracker.refresh` every heartbeat to learn which running
messages were asked to stop, for ``message.cancelled()``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DecodeError, EncodeError
from ..protocol.envelope import decode_entry, fresh_envelope
from ..protocol.results import encode_value
from ..protocol.transitions import to_ms

if TYPE_CHECKING:
    from ..codecs import Codec
    from .leases import Batch, Lease

__all__ = ["Tracker", "track"]

#: The stored value of a cancelled message.
_NOTHING = b""


class Tracker:
    """Results and cancellations of one consumer's lease (shared by its threads)."""

    def __init__(self, lease: Lease, codec: Codec, result_ttl: float) -> None:
        self.lease = lease
        self.codec = codec
        self.ttl_ms = max(1, to_ms(result_ttl))
        #: Delivery tag -> (message id, state, value), until complete() sends it.
        self._finished: dict[str, tuple[str, str, bytes]] = {}
        #: Ids cancelled before they ran (from complete.lua): acked without running.
        self._skip: set[str] = set()
        #: Ids of running messages asked to stop (the cancels set, read each heartbeat).
        self._stop: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._none = encode_value(codec, None)

    # -- before running --------------------------------------------------------------------

    def start(self, batch: Batch, acks: list[str]) -> int:
        """Complete ``acks`` and mark a fetched batch's messages running (noting the
        cancelled ones), in one call; returns how many acks were still held."""
        ids = [
            _id_of(tag, entry)
            for tag, entry in zip(batch.tags, batch.entries, strict=True)
        ]
        return self._call(acks, ids)

    def refresh(self) -> None:
        """Read the running messages asked to stop (one SMEMBERS of a small set)."""
        members = self.lease.conn.call("SMEMBERS", self.lease.keys.cancels)
        self._stop = frozenset(m.decode() for m in members)

    def skip(self, tag: str, msg_id: str) -> bool:
        """Whether this delivery was cancelled before it ran; if so it is finished as
        cancelled (acked with the next flush) and must not run."""
        with self._lock:
            if msg_id not in self._skip and msg_id not in self._stop:
                return False
            self._skip.discard(msg_id)
        self._finished[tag] = (msg_id, "x", _NOTHING)
        return True

    def is_cancelled(self, msg_id: str) -> bool:
        """``message.cancelled()``: whether a cancel of this running message was seen."""
        return msg_id in self._stop or msg_id in self._skip

    # -- after running ---------------------------------------------------------------------

    def succeeded(self, tag: str, msg_id: str, value: Any) -> EncodeError | None:
        """Keep the handler's return value for the ack; the error if it cannot be encoded."""
        try:
            encoded = encode_value(self.codec, value)
        except EncodeError as exc:
            return exc
        self._finished[tag] = (msg_id, "ok", encoded)
        return None

    def cancelled(self, tag: str, msg_id: str) -> None:
        """The handler stopped on its cancellation (raised :class:`Cancelled`)."""
        self._finished[tag] = (msg_id, "x", _NOTHING)

    def complete(self, tags: list[str]) -> int:
        """Ack ``tags`` and write their outcomes in one step; how many were still held.

        Outcomes stay here until the call succeeds, so a call retried after a lost reply
        sends the same ones (a tag already acked is then rejected, nothing written twice).
        """
        return self._call(tags, [])

    def _call(self, tags: list[str], starting: list[str]) -> int:
        keys = self.lease.keys
        consumer = (tags[0] if tags else self.lease.consumer_id + ":").rpartition(":")[
            0
        ]
        script_keys = [
            keys.inflight(consumer),
            keys.stats,
            keys.started(consumer),
            keys.cancels,
        ]
        args: list[Any] = [self.ttl_ms, keys.done, len(tags)]
        for tag in tags:
            # Every tag finished here has its outcome; a missing one would be a bug,
            # and then the message is at least recorded as done without a value.
            msg_id, state, value = self._finished.get(tag) or (tag, "ok", self._none)
            script_keys.append(keys.job(msg_id))
            args += [tag, msg_id, state, value]
        script_keys += [keys.job(i) for i in starting]
        args += starting
        reply = self.lease.conn.run("complete", script_keys, args)
        for tag in tags:
            self._finished.pop(tag, None)
        if len(reply) > 1:
            with self._lock:
                self._skip.update(c.decode() for c in reply[1:])
        return int(reply[0])


def track(lease: Any, codec: Codec, result_ttl: float | None, name: str) -> None:
    """Give a consumer's lease a :class:`Tracker` when it stores results."""
    if result_ttl is None:
        return
    if not hasattr(lease, "consumer_id"):  # a ShardedLease
        raise ConfigurationError(
            f"queue {name!r}: result_ttl= is not supported on sharded queues yet; "
            "declare the consumer without shards, or without result_ttl="
        )
    lease.tracker = Tracker(lease, codec, result_ttl)


def _id_of(tag: str, entry: bytes) -> str:
    """The message id of an entry (its tag when it has none: raw or malformed)."""
    try:
        env = fresh_envelope(entry)
        if env is not None:
            return str(env["i"])
        decoded = decode_entry(entry)  # the id only: begin() checks the signature
    except DecodeError:
        return tag
    if decoded.envelope is not None:
        return str(decoded.envelope["i"])
    return decoded.raw_id or tag
