"""Work queues: producing, inspecting, and managing dead letters."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ._faults import crash_point
from ._types import Duration
from .errors import ConfigurationError, DecodeError
from .message import Message
from .protocol.envelope import decode_entry, new_id, rewrite_header
from .protocol.keys import QueueKeys, queues_key, validate_name
from .protocol.requests import Plan, Step
from .protocol.transitions import check_headers, to_ms, to_seconds

if TYPE_CHECKING:
    from .config import Durability
    from .relay import Relay

__all__ = ["DeadLetter", "Queue", "QueueStats"]

#: put_many sends this many entries per LPUSH (all inside one MULTI/EXEC).
PUT_MANY_CHUNK = 1000


class _Put(NamedTuple):
    """What ``put``/``aput`` send, and what their reply is checked against."""

    msg_id: str
    steps: tuple[Step, ...]
    durability: Durability | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """A snapshot of one queue."""

    name: str
    ready: int
    delayed: int
    in_flight: int
    dead: int
    consumers: int
    #: Seconds since the oldest ready message was enqueued (None when empty or unknown).
    oldest_age: float | None
    #: Lifetime counters: acked, retried, dead, recovered, rejected ...
    counters: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A dead-lettered message, with why it died."""

    id: str
    queue: str
    reason: str
    traceback: str | None
    attempt: int
    dead_at: float
    #: The entry exactly as it was in the queue.
    entry: bytes

    @property
    def body(self) -> Any:
        """The decoded body, or the raw bytes if the entry does not decode."""
        try:
            decoded = decode_entry(self.entry)
        except DecodeError:
            return self.entry
        return decoded.raw if decoded.envelope is None else decoded.envelope["b"]


class Queue:
    """A named work queue. Get one with ``relay.queue(name)``; it holds no connection."""

    def __init__(self, relay: Relay, name: str) -> None:
        self.relay = relay
        self.name = validate_name("queue", name)
        self.keys = QueueKeys.of(relay.namespace, name)
        self._registered = False

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} namespace={self.relay.namespace!r}>"

    # -- producing -------------------------------------------------------------------------

    def encode(
        self,
        body: Any,
        headers: Mapping[str, str] | None = None,
        *,
        msg_id: str | None = None,
    ) -> bytes:
        """Encode one message as a queue entry, enforcing the size limit."""
        envelope: dict[str, Any] = {
            "i": msg_id or new_id(),
            "b": body,
            "t": time.time_ns() // 1_000_000,
        }
        if headers:
            envelope["h"] = check_headers(headers)
        return self.relay.encode_envelope(envelope)

    def put(
        self,
        body: Any,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        dedup_key: str | None = None,
        durable: str | bool | None = None,
    ) -> str:
        """Enqueue one message and return its id.

        A plain put is a single ``LPUSH``: one round trip. ``delay=``/``eta=`` park it in the
        delayed set until then; ``dedup_key=`` makes a put with the same key within the
        relay's ``dedup_ttl`` a no-op that returns the first message's id.

        :raises EncodeError: the codec cannot encode ``body``; nothing was written.
        :raises MessageTooLarge: the encoded message is over ``max_message_size``.
        :raises BrokerUnavailable: Redis did not answer after bounded retries.
        :raises DurabilityNotConfirmed: ``durable=`` (or the relay's) was not confirmed
            in time; the message WAS written.
        """
        put = self._prepare_put(body, delay, eta, headers, dedup_key, durable)
        return self._put_done(put, self.relay.connection.send(put.steps))

    async def aput(
        self,
        body: Any,
        *,
        delay: Duration | None = None,
        eta: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        dedup_key: str | None = None,
        durable: str | bool | None = None,
    ) -> str:
        """:meth:`put` as a coroutine, for ``async def`` code (same arguments, errors and result)."""
        put = self._prepare_put(body, delay, eta, headers, dedup_key, durable)
        return self._put_done(put, await self.relay.aconnection.send(put.steps))

    def _prepare_put(
        self,
        body: Any,
        delay: Duration | None,
        eta: datetime | None,
        headers: Mapping[str, str] | None,
        dedup_key: str | None,
        durable: str | bool | None,
    ) -> _Put:
        """Check, encode and build what ``put``/``aput`` send (the one copy of that logic)."""
        msg_id = new_id()
        entry = self.encode(body, headers, msg_id=msg_id)
        delay_ms = _delay_ms(delay, eta)
        durability = self.relay.durability(durable)
        wait = None if durability is None else durability.command()
        register = ("SADD", queues_key(self.relay.namespace), self.name)
        if not delay_ms and dedup_key is None:
            push = ("LPUSH", self.keys.ready, entry)
            commands = (push,) if self._registered else (register, push)
            return _Put(msg_id, (Step(commands, wait=wait),), durability)
        keys = [self.keys.ready, self.keys.delayed, self.keys.delayed_data]
        if dedup_key is not None:
            if not isinstance(dedup_key, str) or not dedup_key:
                raise ConfigurationError(
                    f"dedup_key= must be a non-empty str, got {dedup_key!r}"
                )
            keys.append(
                self.keys.dedup(hashlib.sha256(dedup_key.encode()).hexdigest()[:32])
            )
        ttl_ms = to_ms(self.relay.dedup_ttl)
        put = Step(
            script="put", keys=keys, args=[entry, msg_id, delay_ms, ttl_ms], wait=wait
        )
        if self._registered:
            return _Put(msg_id, (put,), durability)
        return _Put(msg_id, (Step((register,)), put), durability)

    def _put_done(self, put: _Put, reply: Any) -> str:
        self._registered = True
        if put.durability is not None:
            reply, confirmed = reply
        # A script's reply is the id in the queue: an earlier one when the dedup key
        # was taken.
        result = put.msg_id if put.steps[-1].script is None else _text(reply)
        if put.durability is not None:
            put.durability.check(confirmed, [result])
        return result

    def put_many(
        self,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        durable: str | bool | None = None,
    ) -> list[str]:
        """Enqueue many messages in one round trip, all or nothing (``MULTI``/``EXEC``).

        Every body is encoded and checked before anything is sent, so a bad body fails the
        whole call with nothing written. Returns the ids in order. ``durable=`` as in
        :meth:`put` (one wait for the whole batch).
        """
        ids, steps, durability = self._prepare_put_many(bodies, headers, durable)
        if steps:
            self._put_many_done(ids, durability, self.relay.connection.send(steps))
        return ids

    async def aput_many(
        self,
        bodies: Iterable[Any],
        *,
        headers: Mapping[str, str] | None = None,
        durable: str | bool | None = None,
    ) -> list[str]:
        """:meth:`put_many` as a coroutine (same arguments, errors and result)."""
        ids, steps, durability = self._prepare_put_many(bodies, headers, durable)
        if steps:
            reply = await self.relay.aconnection.send(steps)
            self._put_many_done(ids, durability, reply)
        return ids

    def _prepare_put_many(
        self,
        bodies: Iterable[Any],
        headers: Mapping[str, str] | None,
        durable: str | bool | None,
    ) -> tuple[list[str], tuple[Step, ...], Durability | None]:
        durability = self.relay.durability(durable)
        ids: list[str] = []
        entries: list[bytes] = []
        for index, body in enumerate(bodies):
            msg_id = new_id()
            try:
                entries.append(self.encode(body, headers, msg_id=msg_id))
            except Exception as exc:
                note = getattr(exc, "add_note", None)  # Python >= 3.11
                if note is not None:
                    note(f"in put_many, body at index {index}; nothing was written")
                raise
            ids.append(msg_id)
        if not entries:
            return ids, (), durability
        commands: list[tuple[Any, ...]] = [
            ("SADD", queues_key(self.relay.namespace), self.name)
        ]
        for start in range(0, len(entries), PUT_MANY_CHUNK):
            commands.append(
                ("LPUSH", self.keys.ready, *entries[start : start + PUT_MANY_CHUNK])
            )
        crash_point("put_many")
        wait = None if durability is None else durability.command()
        return ids, (Step(commands, transaction=True, wait=wait),), durability

    def _put_many_done(
        self, ids: list[str], durability: Durability | None, reply: Any
    ) -> None:
        self._registered = True
        if durability is not None:
            durability.check(reply[1], ids)

    def _register(self) -> None:
        if not self._registered:
            self.relay.connection.call(
                "SADD", queues_key(self.relay.namespace), self.name
            )
            self._registered = True

    # -- inspecting ------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        """Depths, consumers and counters, as one consistent snapshot (one read-only script).

        The consumers' in-flight hashes are named by the lease set, so the set is read
        first and read again inside the script; a change in between means a consumer
        came or went, and the snapshot is taken again. Works on a full Redis too.
        """
        return self.relay.connection.drive(self._stats_plan())

    async def astats(self) -> QueueStats:
        """:meth:`stats` as a coroutine."""
        return await self.relay.aconnection.drive(self._stats_plan())

    def _stats_plan(self) -> Plan[QueueStats]:
        k = self.keys
        leases = yield Step((("ZRANGE", k.leases, 0, -1),))
        while True:
            keys = [k.leases, k.ready, k.delayed, k.dead, k.stats]
            keys += [k.inflight(c.decode()) for c in leases]
            reply = yield Step(script="stats", keys=keys)
            if reply[0] == leases:
                break
            leases = reply[0]
        ready, delayed, dead, oldest, flat = reply[1:6]
        return QueueStats(
            name=self.name,
            ready=ready,
            delayed=delayed,
            in_flight=sum(reply[6]),
            dead=dead,
            consumers=len(leases),
            oldest_age=_age(oldest or None),
            counters={
                flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)
            },
        )

    def peek(self, count: int = 10) -> list[Message]:
        """The next ``count`` ready messages, oldest first, without taking them."""
        entries = self.relay.connection.call("LRANGE", self.keys.ready, -count, -1)
        return [
            m
            for m in (_to_message(self.name, e) for e in reversed(entries))
            if m is not None
        ]

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, newest first."""
        ids = self.relay.connection.call(
            "ZREVRANGE", self.keys.dead, offset, offset + limit - 1
        )
        if not ids:
            return []
        records = self.relay.connection.call("HMGET", self.keys.dead_data, *ids)
        return [_dead_letter(r) for r in records if r is not None]

    def iter_dead_ids(self, batch: int = 500) -> Iterator[list[str]]:
        """Dead-letter ids in batches, oldest first (for bulk requeue and purge)."""
        start = 0
        while True:
            ids = self.relay.connection.call(
                "ZRANGE", self.keys.dead, start, start + batch - 1
            )
            if not ids:
                return
            yield [i.decode() for i in ids]
            start += batch

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or these ids) back to the end of the queue, counters reset.

        Each id moves exactly once, even if two operators requeue at the same time.
        """
        total = 0
        for chunk in self._id_chunks(ids):
            records = self.relay.connection.call("HMGET", self.keys.dead_data, *chunk)
            args: list[Any] = []
            for msg_id, record in zip(chunk, records, strict=True):
                if record is not None:
                    entry = base64.b64decode(orjson.loads(record)["entry"])
                    try:
                        entry = rewrite_header(entry, 0, 0, raw_id=msg_id)
                    except ValueError:
                        pass  # a malformed entry goes back as it was (and will be dead-lettered again)
                    args += [msg_id, entry]
            if args:
                total += int(
                    self.relay.connection.run(
                        "requeue_dead",
                        [self.keys.dead, self.keys.dead_data, self.keys.ready],
                        args,
                    )
                )
        return total

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or these ids). Returns how many were deleted."""
        total = 0
        for chunk in self._id_chunks(ids):
            total += int(
                self.relay.connection.run(
                    "purge_dead", [self.keys.dead, self.keys.dead_data], chunk
                )
            )
        return total

    def _id_chunks(self, ids: Iterable[str] | None) -> Iterator[list[str]]:
        if ids is None:
            # Only the letters that are dead now: one that dies again meanwhile gets a later
            # score, so requeueing everything from a failing queue ends. Always read from
            # the start: the previous chunk is gone by the time we read on.
            seconds, micros = self.relay.connection.call("TIME")
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            while raw := self.relay.connection.call(
                "ZRANGEBYSCORE", self.keys.dead, "-inf", now_ms, "LIMIT", 0, 500
            ):
                yield [i.decode() for i in raw]
            return
        chunk = []
        for msg_id in ids:
            chunk.append(msg_id)
            if len(chunk) == 500:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _delay_ms(delay: Duration | None, eta: datetime | None) -> int:
    if delay is not None and eta is not None:
        raise ConfigurationError("pass delay= or eta=, not both")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ConfigurationError(
                f"eta= must be a datetime, not {type(eta).__name__}"
            )
        now = datetime.now(timezone.utc) if eta.tzinfo else datetime.now()
        delay = max(timedelta(0), eta - now)
    if delay is None:
        return 0
    return to_ms(to_seconds(delay, "delay"))


def _age(entry: bytes | None) -> float | None:
    if entry is None:
        return None
    try:
        decoded = decode_entry(entry)
    except DecodeError:
        return None
    if decoded.envelope is None:
        return None
    enqueued_ms: float = decoded.envelope.get("t", 0)
    return max(0.0, time.time() - enqueued_ms / 1000)


def _to_message(queue: str, entry: bytes) -> Message | None:
    try:
        decoded = decode_entry(entry)
    except DecodeError:
        return None
    if decoded.envelope is None:
        return Message(id=decoded.raw_id or "", body=decoded.raw, queue=queue, raw=True)
    env = decoded.envelope
    return Message(
        id=env["i"],
        body=env["b"],
        headers=env.get("h") or {},
        queue=queue,
        enqueued_at=env.get("t", 0) / 1000,
    )


def _dead_letter(record: bytes) -> DeadLetter:
    data = orjson.loads(record)
    return DeadLetter(
        id=data["id"],
        queue=data["queue"],
        reason=data["reason"],
        traceback=data.get("traceback"),
        attempt=data.get("attempt", 0),
        dead_at=data.get("dead_at", 0.0),
        entry=base64.b64decode(data["entry"]),
    )
