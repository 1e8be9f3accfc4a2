"""Work queues: producing, inspecting, and managing dead letters."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import records as _records
from ._faults import crash_point
from ._types import Duration
from .dead_letters import QueueDeadLetters
from .errors import ConfigurationError
from .message import Message, MessageId
from .protocol.envelope import TRACKED, new_id
from .protocol.flow import check_priority, mark_for, put_prio_plan
from .protocol.keys import QueueKeys, queues_key, validate_name
from .protocol.requests import Plan, Step
from .protocol.results import track_commands
from .protocol.transitions import check_headers, to_ms
from .records import DeadLetter as DeadLetter
from .records import QueueStats as QueueStats
from .records import _age, _delay_ms, _pairs, _text, _to_message
from .records import requeue_args as requeue_args
from .results import QueueResults
from .sharding import (
    ShardPicker,
    merge_stats,
    resolve_shards,
    shard_keys,
    validate_shards,
)

if TYPE_CHECKING:
    from ._maintenance import Purged
    from .relay import Relay

__all__ = ["DeadLetter", "Queue", "QueueStats"]

#: put_many sends this many entries per LPUSH (all inside one MULTI/EXEC).
PUT_MANY_CHUNK = 1000


class Queue(QueueResults, QueueDeadLetters):
    """A named work queue. Get one with ``relay.queue(name)``; it holds no connection.

    ``shards`` splits it over several hash tags (Redis Cluster slots), see
    :mod:`redrelay.sharding`; None adopts the count stored with the queue (1 if none).
    ``result``, ``status`` and ``cancel`` come from :class:`~redrelay.results.QueueResults`.
    """

    def __init__(self, relay: Relay, name: str, shards: int | None = None) -> None:
        self.relay = relay
        self.name = validate_name("queue", name)
        #: The plain queue's keys; a sharded queue's data lives in ``shard_keys()``.
        self.keys = QueueKeys.of(relay.namespace, name)
        self.declared_shards = validate_shards(shards)
        self._registered = False
        self._shards: list[QueueKeys] | None = None
        self._picker = ShardPicker(1)
        self.tracked = False

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} namespace={self.relay.namespace!r}>"

    def declare(self, shards: int | None) -> None:
        """Declare the shard count (``relay.queue(name, shards=)``); a different one raises."""
        shards = validate_shards(shards)
        if shards is None or shards == self.declared_shards:
            return
        known = self.declared_shards or (len(self._shards) if self._shards else None)
        if known is not None and known != shards:
            raise ConfigurationError(
                f"queue {self.name!r} already has shards={known} in this process; got shards={shards}"
            )
        self.declared_shards = shards

    def shard_keys(self, *, register: bool = False) -> list[QueueKeys]:
        """The keys of each shard (one: the plain queue), read from Redis on first use.

        ``register`` also records the queue (and its shard count) for ``stats``.
        """
        return self.relay.connection.drive(self._shard_keys_plan(register))

    def _shard_keys_plan(self, register: bool) -> Plan[list[QueueKeys]]:
        if self._shards is not None and (self._registered or not register):
            return self._shards
        ns = self.relay.namespace
        n, known = yield from resolve_shards(
            self.keys,
            self.name,
            self.declared_shards,
            register=queues_key(ns).encode() if register else None,
        )
        keys = shard_keys(ns, self.name, n)
        if known:  # else ask again next time: a producer may register it meanwhile
            self._shards, self._picker = keys, ShardPicker(n)
            self._registered = self._registered or register
        return keys

    def shard_for_plan(self, key: str) -> Plan[QueueKeys]:
        """The shard that ``key`` (a dedup key, a schedule's name) always maps to."""
        shards = yield from self._shard_keys_plan(register=True)
        return shards[self._picker.by_key(key)] if len(shards) > 1 else shards[0]

    # -- producing -------------------------------------------------------------------------

    def encode(
        self,
        body: Any,
        headers: Mapping[str, str] | None = None,
        *,
        msg_id: str | None = None,
    ) -> bytes:
        """Encode one message as a queue entry, enforcing the size limit.

        A tracked queue's entries say so (``"r": 1``, right after the id): the worker then
        marks them running and deletes their record when they finish, and skips both for
        the others (docs/results.md).
        """
        stamp = time.time_ns() // 1_000_000
        envelope: dict[str, Any] = (
            {"i": msg_id or new_id(), TRACKED: 1, "b": body, "t": stamp}
            if self.tracked
            else {"i": msg_id or new_id(), "b": body, "t": stamp}
        )
        if headers:
            envelope["h"] = check_headers(headers)
        return self.relay.encode_envelope(envelope, ("queue", self.name))

    def put(
        self,
        body: Any,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        dedup_key: str | None = None,
        durable: str | bool | None = None,
        priority: int = 0,
    ) -> MessageId:
        """Enqueue one message and return its id (a :class:`MessageId`, a ``str``).

        A plain put is a single ``LPUSH``: one round trip. ``delay=``/``eta=`` park it in the
        delayed set until then; ``dedup_key=`` makes a put with the same key within the
        relay's ``dedup_ttl`` a no-op that returns the first message's id, with
        ``.duplicate`` True. ``priority=`` (-100..100, higher first): flow-control.md.

        :raises EncodeError: the codec cannot encode ``body``; nothing was written.
        :raises MessageTooLarge: the encoded message is over ``max_message_size``.
        :raises BrokerUnavailable: Redis did not answer after bounded retries.
        :raises DurabilityNotConfirmed: ``durable=`` (or the relay's) was not confirmed
            in time; the message WAS written.
        """
        plan = self._put_plan(body, delay, eta, headers, dedup_key, durable, priority)
        return self.relay.connection.drive(plan)

    async def aput(
        self,
        body: Any,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        dedup_key: str | None = None,
        durable: str | bool | None = None,
        priority: int = 0,
    ) -> MessageId:
        """:meth:`put` as a coroutine, for ``async def`` code (same arguments, errors and result)."""
        plan = self._put_plan(body, delay, eta, headers, dedup_key, durable, priority)
        return await self.relay.aconnection.drive(plan)

    def _put_plan(
        self,
        body: Any,
        delay: Duration | None,
        eta: datetime | None,
        headers: Mapping[str, str] | None,
        dedup_key: str | None,
        durable: str | bool | None,
        priority: int = 0,
    ) -> Plan[MessageId]:
        """Check, encode, then send: the one copy of ``put``/``aput`` (every check runs
        before the first round trip, so a bad argument writes nothing)."""
        msg_id = new_id()
        check_priority(priority)
        entry = self.encode(body, headers, msg_id=msg_id)
        entry = mark_for(self, entry, priority, body, headers)
        delay_ms = _delay_ms(delay, eta)
        durability = self.relay.durability(durable)
        if dedup_key is not None and (not isinstance(dedup_key, str) or not dedup_key):
            raise ConfigurationError(
                f"dedup_key= must be a non-empty str, got {dedup_key!r}"
            )
        wait = None if durability is None else durability.command()
        shards = self._shards if self._registered else None
        if shards is None:
            shards = yield from self._shard_keys_plan(register=True)
        if dedup_key is not None:
            # By the key, so a repeated put meets the first one's dedup key.
            k = shards[self._picker.by_key(dedup_key)]
        else:
            k = shards[self._picker.next()] if len(shards) > 1 else shards[0]
        if self.tracked:
            return (
                yield from self._put_tracked(
                    k, entry, msg_id, delay_ms, dedup_key, wait, durability, priority
                )
            )
        if not delay_ms and dedup_key is None and not priority:
            reply = yield Step((("LPUSH", k.ready, entry),), wait=wait)
            result = msg_id
        else:
            keys = [k.ready, k.delayed, k.delayed_data, k.prio, k.prio_seq]
            if dedup_key is not None:
                keys.append(
                    k.dedup(hashlib.sha256(dedup_key.encode()).hexdigest()[:32])
                )
            ttl_ms = to_ms(self.relay.dedup_ttl)
            args: list[Any] = [entry, msg_id, delay_ms, ttl_ms]
            reply = yield Step(script="put", keys=keys, args=args, wait=wait)
            # The id in the queue: an earlier one when the dedup key was taken.
            result = _text(reply[0] if wait is not None else reply)
        if durability is not None:
            durability.check(reply[1], [result])
        return MessageId(result, duplicate=result != msg_id)

    def _put_tracked(
        self,
        k: QueueKeys,
        entry: bytes,
        msg_id: str,
        delay_ms: int,
        dedup_key: str | None,
        wait: Any,
        durability: Any,
        priority: int = 0,
    ) -> Plan[MessageId]:
        """A put that also creates the message's record (docs/results.md)."""
        if self._shards is not None and len(self._shards) > 1:
            raise ConfigurationError(
                f"queue {self.name!r} is sharded: results are not supported there yet"
            )
        track = track_commands(k, msg_id, bool(delay_ms), entry)
        if not delay_ms and dedup_key is None and not priority:
            # The record and the entry in one transaction: a worker never sees one alone.
            reply = yield Step(
                (*track, ("LPUSH", k.ready, entry)), transaction=True, wait=wait
            )
            if durability is not None:
                durability.check(reply[1], [msg_id])
            return MessageId(msg_id)
        # The record first: a message can then never finish before its record exists.
        yield Step(track, transaction=True)
        keys = [k.ready, k.delayed, k.delayed_data, k.prio, k.prio_seq]
        if dedup_key is not None:
            keys.append(k.dedup(hashlib.sha256(dedup_key.encode()).hexdigest()[:32]))
        args: list[Any] = [entry, msg_id, delay_ms, to_ms(self.relay.dedup_ttl)]
        reply = yield Step(script="put", keys=keys, args=args, wait=wait)
        result = _text(reply[0] if wait is not None else reply)
        if result != msg_id:  # deduplicated: this id was never queued
            yield Step((("DEL", k.job(msg_id)),))
        if durability is not None:
            durability.check(reply[1], [result])
        return MessageId(result, duplicate=result != msg_id)

    def put_many(
        self,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        durable: str | bool | None = None,
        priority: int = 0,
    ) -> list[str]:
        """Enqueue many messages in one round trip, all or nothing (``MULTI``/``EXEC``).

        Every body is encoded and checked before anything is sent, so a bad body fails the
        whole call with nothing written. Returns the ids in order. ``durable=`` as in
        :meth:`put` (one wait for the whole batch). A sharded queue deals the bodies over
        its shards: on Redis Cluster in one ``MULTI`` per shard, so all or nothing *per
        shard* only (a transaction cannot span slots); on one server still in one ``MULTI``.
        """
        plan = self._put_many_plan(bodies, headers, durable, priority)
        return self.relay.connection.drive(plan)

    async def aput_many(
        self,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        durable: str | bool | None = None,
        priority: int = 0,
    ) -> list[str]:
        """:meth:`put_many` as a coroutine (same arguments, errors and result)."""
        plan = self._put_many_plan(bodies, headers, durable, priority)
        return await self.relay.aconnection.drive(plan)

    def _put_many_plan(
        self,
        bodies: Iterable[Any],
        headers: Mapping[str, str] | None,
        durable: str | bool | None,
        priority: int = 0,
    ) -> Plan[list[str]]:
        check_priority(priority)
        durability = self.relay.durability(durable)
        ids: list[str] = []
        entries: list[bytes] = []
        for index, body in enumerate(bodies):
            msg_id = new_id()
            try:
                entry = self.encode(body, headers, msg_id=msg_id)
                entries.append(mark_for(self, entry, priority, body, headers))
            except Exception as exc:
                note = getattr(exc, "add_note", None)  # Python >= 3.11
                if note is not None:
                    note(f"in put_many, body at index {index}; nothing was written")
                raise
            ids.append(msg_id)
        if not entries:
            return ids
        shards = yield from self._shard_keys_plan(register=True)
        groups = self._picker.spread(len(entries)) if len(shards) > 1 else [[]]
        crash_point("put_many")
        wait = None if durability is None else durability.command()
        if priority:  # put_prio.lua, one atomic call per shard (protocol/flow.py)
            plan = put_prio_plan(shards, groups, entries, ids, self.tracked, durability)
            return (yield from plan)
        batches: list[list[tuple[Any, ...]]] = []
        for k, group in zip(shards, groups, strict=True):
            part = [entries[i] for i in group] if len(shards) > 1 else entries
            commands: list[tuple[Any, ...]] = [
                ("LPUSH", k.ready, *part[start : start + PUT_MANY_CHUNK])
                for start in range(0, len(part), PUT_MANY_CHUNK)
            ]
            if self.tracked:  # records first, in the same MULTI (docs/results.md)
                if len(shards) > 1:
                    raise ConfigurationError(
                        f"queue {self.name!r} is sharded: results are not supported there yet"
                    )
                commands[:0] = [
                    c
                    for i, e in zip(ids, entries, strict=True)
                    for c in track_commands(k, i, False, e)
                ]
            # One queue tag per MULTI on a cluster: a transaction stays in one slot.
            if commands and (self.relay.is_cluster or not batches):
                batches.append(commands)
            elif commands:
                batches[0] += commands
        for commands in batches:
            reply = yield Step(commands, transaction=True, wait=wait)
            if durability is not None:
                durability.check(reply[1], ids)
        return ids

    def _register(self) -> None:
        if not self._registered:
            self.shard_keys(register=True)

    # -- inspecting ------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        """Depths, consumers and counters, as one consistent snapshot (one read-only script).

        The consumers' in-flight hashes are named by the lease set, so the set is read
        first and read again inside the script; a change in between means a consumer
        came or went, and the snapshot is taken again. Works on a full Redis too. A
        sharded queue sums its shards' snapshots (each consistent on its own).
        """
        return self.relay.connection.drive(self._stats_plan())

    async def astats(self) -> QueueStats:
        """:meth:`stats` as a coroutine."""
        return await self.relay.aconnection.drive(self._stats_plan())

    def _stats_plan(self) -> Plan[QueueStats]:
        shards = yield from self._shard_keys_plan(register=False)
        parts = []
        for k in shards:
            parts.append((yield from self._shard_stats_plan(k)))
        return parts[0] if len(parts) == 1 else merge_stats(self.name, parts)

    def _shard_stats_plan(self, k: QueueKeys) -> Plan[QueueStats]:
        leases = yield Step((("ZRANGE", k.leases, 0, -1),))
        while True:
            keys = [k.leases, k.ready, k.delayed, k.dead, k.stats, *k.flow_stats()]
            keys += [k.inflight(c.decode()) for c in leases]
            reply = yield Step(script="stats", keys=keys)
            if reply[0] == leases:
                break
            leases = reply[0]
        ready, delayed, dead, oldest, flat = reply[1:6]
        now = int(reply[8])
        lapsed = [int(float(e)) <= now for e in reply[7]]
        return QueueStats(
            name=self.name,
            ready=ready + reply[9] + reply[10],  # + prioritized and parked
            **_records.flow_fields(reply[9:14]),
            delayed=delayed,
            in_flight=sum(reply[6]),
            dead=dead,
            consumers=lapsed.count(False),
            expired=lapsed.count(True),
            in_flight_expired=sum(
                n for n, x in zip(reply[6], lapsed, strict=True) if x
            ),
            oldest_age=_age(oldest or None),
            counters={
                flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)
            },
        )

    def peek(self, count: int = 10) -> list[Message]:
        """The next ``count`` ready messages in the order they will run (priorities > 0,
        priority 0 oldest first, priorities < 0), without taking them. For a sharded
        queue: the first ``count`` over all shards, by enqueue time."""
        messages: list[Message] = []
        conn = self.relay.connection
        for k in self.shard_keys():
            prio = _pairs(conn.call("ZRANGE", k.prio, 0, count - 1, "WITHSCORES"))
            ready = conn.call("LRANGE", k.ready, -count, -1)
            entries = _records.run_order(prio, ready)
            messages += [
                m for m in (_to_message(self.name, e) for e in entries) if m is not None
            ][:count]
        if len(self.shard_keys()) > 1:
            messages.sort(key=lambda m: m.enqueued_at)
        return messages[:count]

    # -- operator actions (redrelay/_maintenance.py) ------------------------------------

    def purge(self, *, delayed: bool = False) -> Purged:
        """Delete the ready (and with ``delayed``, the delayed) messages; in-flight ones and
        dead letters stay. The ``purged`` counter of :meth:`stats` counts them."""
        from ._maintenance import purge_queue

        return purge_queue(self, delayed=delayed)

    def delete(self, *, force: bool = False) -> int:
        """Delete every message, counter and the name from ``stats``; return the messages
        deleted. Refused (:class:`ConfigurationError`) while a worker holds a live lease,
        which would recreate the queue, unless ``force``."""
        from ._maintenance import delete_queue

        self._registered, self._shards, self._picker = False, None, ShardPicker(1)
        return delete_queue(self, force=force)
