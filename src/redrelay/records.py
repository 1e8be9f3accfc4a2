"""What a queue reads back: stats, dead letters, and the decoding of stored entries.

Plain values and pure functions, shared by :mod:`redrelay.queue` and
:mod:`redrelay.topic` (whose dead letters have the same shape).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ._types import Duration
from .errors import ConfigurationError, DecodeError
from .message import Message
from .protocol.envelope import decode_entry, rewrite_header
from .protocol.flow import PRIO_ZERO_SCORE
from .protocol.transitions import to_ms, to_seconds

__all__ = ["DeadLetter", "QueueStats", "decode_dead_letter", "requeue_args"]


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
    #: Lifetime counters: acked, retried, dead, recovered, rejected, held_rate,
    #: held_concurrency (fetches a limit held back), parked (entries parked by key) ...
    counters: dict[str, int]
    #: Consumers whose lease ran out (the process died, or its threads stopped making
    #: progress) and that no sweep has taken back yet; ``consumers`` counts live ones.
    expired: int = 0
    #: Of ``in_flight``, the deliveries held by expired consumers: they return to the
    #: queue at the next sweep of any worker on it.
    in_flight_expired: int = 0
    #: Of ``ready``: messages of priority != 0, and messages parked by their limit key.
    prioritized: int = 0
    parked: int = 0
    #: Limit keys with parked messages (up to 10, soonest due first) and their number.
    parked_keys: list[str] = field(default_factory=list)
    parked_key_count: int = 0
    #: The flow limits the queue's workers run with (None: none).
    limits: str | None = None


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


def requeue_args(ids: list[str], records: list[bytes | None]) -> list[Any]:
    """``id, entry, ...`` for a requeue script: each dead letter's entry with its
    counters reset (a malformed entry goes back as it was, and dies again)."""
    args: list[Any] = []
    for msg_id, record in zip(ids, records, strict=True):
        if record is not None:
            entry = base64.b64decode(orjson.loads(record)["entry"])
            try:
                entry = rewrite_header(entry, 0, 0, raw_id=msg_id)
            except ValueError:
                pass
            args += [msg_id, entry]
    return args


def _pairs(reply: Any) -> list[tuple[bytes, Any]]:
    """ZRANGE ... WITHSCORES as (member, score) pairs (RESP2 flat list or RESP3 pairs)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(m, s) for m, s in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


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


def decode_dead_letter(record: bytes) -> DeadLetter:
    """A dead record as bury writes it (JSON: id, queue, reason, traceback, attempt,
    dead_at, entry in base64); ``KeyError``/``ValueError`` for a malformed one."""
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


def flow_fields(reply: list[Any]) -> dict[str, Any]:
    """QueueStats' priority and flow-limit fields from stats.lua's reply[7:12]."""
    prioritized, parked, keys, key_count, limits = reply
    return {
        "prioritized": prioritized,
        "parked": parked,
        "parked_keys": [key.decode() for key in keys],
        "parked_key_count": key_count,
        "limits": limits.decode() if limits else None,
    }


def run_order(prio: list[tuple[bytes, Any]], ready: list[bytes]) -> list[bytes]:
    """Entries in the order a fetch takes them: the priority set's ``(entry, score)``
    pairs of priority > 0, then the ready list (LRANGE order, oldest last), then the
    rest of the priority set."""
    high = [e for e, score in prio if float(score) < PRIO_ZERO_SCORE]
    low = [e for e, score in prio if float(score) >= PRIO_ZERO_SCORE]
    return [*high, *reversed(ready), *low]
