"""The worker side of results and cancellation, for consumers declared with ``result_ttl=``.

Such a consumer never acks on its fetch (fetch.lua knows nothing of results): each
finished delivery waits here with its outcome, and complete.lua acks and writes them in
one call, so a result never exists without its ack (or the reverse). That call goes out
once per batch, when the next batch arrives, right after the next fetch (so that Redis
answers the fetch first), *without waiting* for its reply (read before the next one):
Redis writes the results while this thread runs handlers, as it does with the fetch sent
ahead (fetcher.py). It also marks the new batch's tracked messages running: only those
(put with a record, and the envelope field that says so) have a record to delete, a
running mark, a cancel to see and waiters; the others cost their outcome alone, and a
batch without any is found so without a look at each entry. Cancellations
need no round trip here: cancel.lua removes a queued or delayed message from the queue
itself, and a message a worker already took is named in the cancels set, which the
keeper reads every heartbeat (:meth:`Tracker.refresh`) for ``message.cancelled()`` and to
skip taken-but-unstarted deliveries.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .._faults import crash_point
from ..errors import ConfigurationError, EncodeError, RedrelayError
from ..message import bind_cancel
from ..protocol.envelope import entry_tracking, untracked_batch
from ..protocol.results import bucket_of, encode_value, pack_outcome
from ..protocol.transitions import to_ms
from .leases import retry_forever

if TYPE_CHECKING:
    from ..codecs import Codec
    from ..message import Message
    from .leases import Batch, Lease
    from .runner import Runner

__all__ = ["Tracker", "settle_batch", "start_batch", "track"]

log = logging.getLogger("redrelay.worker")

#: The stored outcome of a cancelled message.
_CANCELLED = pack_outcome("x", b"")
_NONE: frozenset[str] = frozenset()
_ID, _OUTCOME = itemgetter(0), itemgetter(1)


class Tracker:
    """Results and cancellations of one consumer's lease (shared by its threads)."""

    def __init__(self, lease: Lease, codec: Codec, result_ttl: float) -> None:
        self.lease = lease
        self.codec = codec
        self.ttl_ms = max(1, to_ms(result_ttl))
        #: Delivery tag -> (message id, outcome as stored), until a complete call takes it:
        #: of tracked messages, and of the others (public for fastpath._tracked, which
        #: writes ``none``, the outcome of a None return value, without a method call).
        self.finished: dict[str, tuple[str, bytes]] = {}
        self.plain: dict[str, tuple[str, bytes]] = {}
        #: Ids of taken messages asked to stop (the cancels set, read every heartbeat).
        self._stop: frozenset[str] = frozenset()
        self.none = pack_outcome("ok", encode_value(codec, None))
        #: Per consumer thread: the complete call sent and not read yet (``sent``), and the
        #: tags of its batch known to be of tracked messages (``marked``) or not (``plain``).
        self._local = threading.local()

    # -- cancellations ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the taken messages asked to stop (one SMEMBERS of a small set), and drop
        the result buckets whose results expired (sweep_results.lua)."""
        keys, conn = self.lease.keys, self.lease.conn
        members, due = conn.pipeline(
            [
                ("SMEMBERS", keys.cancels),
                ("ZRANGEBYSCORE", keys.results, "-inf", int(time.time() * 1000)),
            ],
            transaction=False,
        )
        self._stop = frozenset(m.decode() for m in members)
        if due:  # due by this clock: the script checks by the server's
            conn.run("sweep_results", [keys.results, *(b.decode() for b in due)], [])

    def skip(self, tag: str, msg_id: str) -> bool:
        """Whether this delivery was asked to stop before it started; if so it is finished
        as cancelled (acked with the next call) and must not run."""
        if msg_id not in self._stop:
            return False
        self.finished[tag] = (msg_id, _CANCELLED)  # only tracked ones are asked
        return True

    def begin(self, tag: str, entry: bytes, message: Message) -> bool | None:
        """Before a first delivery runs: None if it was cancelled before it started (then
        finished as cancelled: ack it, do not run it), else whether it is tracked (and
        then ``message.cancelled()`` asks this tracker)."""
        if message.id in self._stop:
            self.finished[tag] = (message.id, _CANCELLED)
            return None
        local = self._local
        if tag in getattr(local, "plain", _NONE):
            return False
        if tag in getattr(local, "marked", _NONE) or entry_tracking(entry, tag)[1]:
            bind_cancel(message, self.is_cancelled)
            return True
        return False

    def tracked(self, tag: str, entry: bytes) -> bool:
        """Whether the delivery ``tag`` of ``entry`` is of a tracked message: known from its
        batch on the thread that started it (:meth:`start`), else read from the entry."""
        local = self._local
        if tag in getattr(local, "plain", _NONE):
            return False
        if tag in getattr(local, "marked", _NONE):
            return True
        return entry_tracking(entry, tag)[1]

    def is_cancelled(self, msg_id: str) -> bool:
        """``message.cancelled()``: whether a cancel of this taken message was seen."""
        return msg_id in self._stop

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(
        self, tag: str, msg_id: str, value: Any, tracked: bool = True
    ) -> EncodeError | None:
        """Keep the handler's return value for the ack; the error if it cannot be encoded.
        ``tracked``: see :meth:`tracked` (True when unsure: it only costs a DEL)."""
        if value is None:  # the common case: encoded once
            encoded = self.none
        else:
            try:
                encoded = pack_outcome("ok", encode_value(self.codec, value))
            except EncodeError as exc:  # said of the return value, not of a body
                return EncodeError(exc.codec, value, exc.__cause__ or exc, result=True)
        (self.finished if tracked else self.plain)[tag] = (msg_id, encoded)
        return None

    def cancelled(self, tag: str, msg_id: str) -> None:
        """The handler stopped on its cancellation (raised :class:`Cancelled`)."""
        self.finished[tag] = (msg_id, _CANCELLED)

    # -- complete calls --------------------------------------------------------------------

    def start(self, batch: Batch, acks: list[str]) -> None:
        """Send the complete call of ``acks`` (emptied) that also marks the tracked messages
        of ``batch`` running, without waiting for its reply: :meth:`settle` reads it
        before the next call."""
        local, tags = self._local, batch.tags
        ids: list[str | bytes] = []
        if untracked_batch(batch.entries):  # no message to mark: nothing per entry
            local.plain, local.marked = frozenset(tags), _NONE
        else:
            plain, marked = [], []
            for tag, entry in zip(tags, batch.entries, strict=True):
                msg_id, tracked = entry_tracking(entry, tag)
                if tracked:
                    ids.append(msg_id)
                    marked.append(tag)
                else:
                    plain.append(tag)
            local.plain, local.marked = frozenset(plain), frozenset(marked)
        keys, args = self._call(acks, ids)
        n = len(acks)
        # Kept before sending: if the send fails, settle() sends the same call again.
        self._local.sent = (keys, args, n, None)
        acks.clear()
        if n:
            crash_point("ack")
        pending = self.lease.conn.send_script("complete", keys, args)
        self._local.sent = (keys, args, n, pending)

    def settle(self) -> tuple[int, int]:
        """Read this thread's call sent by :meth:`start`: ``(acks sent, acks held)``.

        A lost reply is answered by sending the same call again (the tags it acked are
        then rejected: nothing is written twice).
        """
        sent = getattr(self._local, "sent", None)
        if sent is None:
            return 0, 0
        keys, args, n, pending = sent
        reply: Any = None
        if pending is not None:
            self._local.sent = (keys, args, n, None)
            try:
                reply = pending.result()
            except RedrelayError:
                log.warning(
                    "%s: a complete call's reply was lost; sending it again",
                    self.lease.keys.prefix,
                )
        if reply is None:
            reply = self.lease.conn.run("complete", keys, args)
        self._local.sent = None
        return n, int(reply)

    def complete(self, tags: list[str]) -> int:
        """Ack ``tags`` and write their outcomes now (after reading a call in flight);
        how many of ``tags`` were still held."""
        sent, held = self.settle()
        if sent > held:
            log.warning(
                "%s: %d acks rejected (lease taken over)",
                self.lease.keys.prefix,
                sent - held,
            )
        keys, args = self._call(tags, [], keep=True)
        held = int(self.lease.conn.run("complete", keys, args))
        for tag in tags:  # only now: a call that failed is made again with them
            self.finished.pop(tag, None)
            self.plain.pop(tag, None)
        return held

    def _call(
        self, tags: list[str], starting: list[str | bytes], keep: bool = False
    ) -> tuple[list[str], list[Any]]:
        """complete.lua's keys and arguments; the outcomes leave ``finished``/``plain`` unless
        ``keep`` (a call kept in ``_local.sent`` is sent again after a lost reply)."""
        keys = self.lease.keys
        consumer = (tags[0] if tags else self.lease.consumer_id + ":").rpartition(":")[
            0
        ]
        job = keys.job
        take, plain = (
            (self.finished.get, self.plain.get)
            if keep
            else (self.finished.pop, self.plain.pop)
        )
        # Tracked messages first, with their records' keys: complete.lua deletes those
        # records and unmarks those running; the others only get their outcome.
        first: list[str] = []
        records: list[str] = []
        done: list[Any] = list(map(plain, tags, repeat(None)))
        order = tags
        if done.count(None) == len(done):  # all tracked (a tracking producer)
            # A tag without its outcome would be a bug: then at least done, no value.
            done = [take(tag, (tag, self.none)) for tag in tags]
            first, records = tags, [job(msg_id) for msg_id, _ in done]
        elif None in done:
            rest: list[str] = []
            theirs: list[tuple[str, bytes]] = []
            mine: list[tuple[str, bytes]] = []
            for tag, got in zip(tags, done, strict=True):
                if got is not None:
                    rest.append(tag)
                    theirs.append(got)
                    continue
                # Every tag finished here has its outcome; a missing one would be a
                # bug, and then the message is at least recorded as done without a value.
                got = take(tag, (tag, self.none))
                first.append(tag)
                records.append(job(got[0]))
                mine.append(got)
            order, done = first + rest, mine + theirs
        outcomes = list(map(_OUTCOME, done))
        if outcomes and outcomes.count(outcomes[0]) == len(outcomes):
            del outcomes[1:]  # the same for all (None, most often): sent once
        script_keys = [
            keys.inflight(consumer),
            keys.stats,
            keys.started(consumer),
            keys.cancels,
            keys.history,
            keys.running,
            keys.results,
            bucket_of(keys, self.ttl_ms, int(time.time() * 1000)),
            *records,
        ]
        args: list[Any] = [self.ttl_ms, keys.done, len(tags), len(first), len(outcomes)]
        args += order
        args += map(_ID, done)
        args += outcomes
        args += starting
        return script_keys, args


def start_batch(runner: Runner, lease: Lease, batch: Batch, acks: list[str]) -> None:
    """For the runner, with a fetched batch: if the consumer stores results, read the
    last complete call, then send the next one (``acks``, emptied, and marking ``batch``
    running) without waiting."""
    if lease.tracker is not None:
        settle_batch(runner, lease, [])
        lease.tracker.start(batch, acks)


def settle_batch(runner: Runner, lease: Lease, acks: list[str]) -> None:
    """For the runner's flush of ``acks``: with none, read this thread's complete call
    in flight, if any (with some, the ack itself reads it first)."""
    if lease.tracker is None or acks:
        return
    what = f"ack on {lease.keys.prefix}"
    sent, held = retry_forever(lease.tracker.settle, runner._halt, what)
    runner._note_rejected(lease, sent - held)


def track(lease: Any, codec: Codec, result_ttl: float | None, name: str) -> None:
    """Give a consumer's lease a :class:`Tracker` when it stores results."""
    if result_ttl is None:
        return
    if not hasattr(lease, "consumer_id"):  # a ShardedLease
        raise ConfigurationError(
            f"queue {name!r}: result_ttl= is not supported on sharded queues yet; "
            "declare the consumer without shards, or without result_ttl="
        )
    tracker = Tracker(lease, codec, result_ttl)
    tracker.refresh()  # before the first fetch: cancels asked before this worker started
    # An empty call loads complete.lua: a call sent ahead to a server without it would
    # be answered NOSCRIPT, and run only when its reply is read.
    tracker.complete([])
    lease.tracker = tracker
