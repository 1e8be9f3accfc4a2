"""Results, status and cancellation of tracked messages: the decisions, once for sync and async.

A *tracked* message has a record while it is pending, the hash ``QueueKeys.job(id)``:
field ``s`` holds its state (``q`` queued, ``d`` delayed, ``r`` running, as cancel.lua
marks a taken one), ``e`` a copy of the entry (cancel.lua removes a queued message from
the queue by value; a cancel of a message a worker took goes to the queue's ``cancels``
set instead). The producer writes it in the same transaction as the put, and marks the
entry (``envelope.TRACKED``). Workers name the tracked messages they take in the queue's
``running`` set (one SADD per batch, with the previous batch's acks, in complete.lua),
and the ack writes the outcome: complete.lua deletes the record (of a tracked message)
and stores the outcome in a *result bucket*, one hash per time
bucket and result TTL (``QueueKeys.result_bucket``), listed in the ``results`` sorted
set with its expiry, so a batch costs one HSET and one PEXPIREAT rather than a key and
an expiry per message. A death (bury.lua) and a cancel of a queued message (cancel.lua)
write the outcome in the record itself (``s`` = ``fail`` or ``x``, ``v`` the failure)
and expire it after the result TTL; the death of an untracked message, which has no
record, goes to a result bucket instead (state ``f``). Pending records expire after
:data:`PENDING_TTL_MS`, a safety net only (a tracked message always finishes).
"""

from __future__ import annotations

import enum
import traceback
from typing import Any

import orjson

from ..codecs import Codec, resolve_codec
from ..errors import ConfigurationError, JobCancelled, JobFailed, ResultNotFound
from .keys import QueueKeys
from .requests import Arg, Plan, Step

__all__ = [
    "BUCKETS",
    "PENDING_TTL_MS",
    "Status",
    "bucket_of",
    "cancel_step",
    "check_id",
    "decode_outcome",
    "encode_value",
    "failure_record",
    "outcomes_plan",
    "pack_outcome",
    "status_plan",
    "track_commands",
]

#: How long the record of a message that has not finished lives (30 days, in ms).
PENDING_TTL_MS = 30 * 86400 * 1000
#: Result buckets per result TTL (see :func:`bucket_of`): more make a read look in more
#: hashes, fewer keep results longer past their TTL.
BUCKETS = 16

_PACK = {"ok": b"o", "fail": b"f", "x": b"x"}
_UNPACK = {b"o": b"ok", b"f": b"fail", b"x": b"x"}


class Status(str, enum.Enum):
    """Where a message is, as ``queue.status(id)`` reports it."""

    QUEUED = "queued"
    DELAYED = "delayed"
    #: Taken by a worker (running, about to run, or waiting for a retry's backoff).
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: No record: an unknown id, an expired result, or an untracked message.
    UNKNOWN = "unknown"


_STATES = {
    b"q": Status.QUEUED,
    b"d": Status.DELAYED,
    b"r": Status.RUNNING,
    b"ok": Status.SUCCEEDED,
    b"fail": Status.FAILED,
    b"x": Status.CANCELLED,
}


def check_id(msg_id: object) -> str:
    """A message id as given to ``result``/``status``/``cancel``, checked (names the fix)."""
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 200:
        raise ConfigurationError(
            f"id= must be a message id (a non-empty str of at most 200 characters, as put() "
            f"returns), got {msg_id!r}"
        )
    if any(c.isspace() for c in msg_id):
        raise ConfigurationError(f"id= must not contain whitespace, got {msg_id!r}")
    return msg_id


def encode_value(codec: Codec, value: Any) -> bytes:
    """A return value as stored: the codec's kind byte, then its encoding.

    :raises EncodeError: the codec cannot encode it (the worker records that as the failure).
    """
    return codec.kind + codec.dumps(value)


def failure_record(exc: BaseException | None, reason: str) -> bytes:
    """The failure stored for a dead message: class path, message, traceback, reason."""
    if exc is None:
        kind, text, tb = "redrelay.dead", reason, None
    else:
        cls = type(exc)
        kind = f"{cls.__module__}.{cls.__qualname__}"
        text = str(exc)
        tb = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return orjson.dumps(
        {"type": kind, "message": text, "traceback": tb, "reason": reason}
    )


def track_commands(
    keys: QueueKeys, msg_id: str, delayed: bool, entry: bytes
) -> list[tuple[Arg, ...]]:
    """The commands that create a message's record, sent in the put's transaction."""
    job = keys.job(msg_id)
    return [
        ("HSET", job, "s", "d" if delayed else "q", "e", entry),
        ("PEXPIRE", job, PENDING_TTL_MS),
    ]


def pack_outcome(state: str, value: bytes) -> bytes:
    """An outcome as a result bucket stores it: a state byte (``o`` ok, ``f`` failed,
    ``x`` cancelled), then the value."""
    return _PACK[state] + value


def bucket_of(keys: QueueKeys, ttl_ms: int, now_ms: int) -> str:
    """The result bucket of outcomes written at ``now_ms`` (the writer's clock) with a
    TTL of ``ttl_ms``: ``BUCKETS`` buckets per TTL, so a result lives between ``ttl_ms``
    and ``ttl_ms * (1 + 1/BUCKETS)``, plus up to a heartbeat (the bucket's results expire
    ``ttl_ms`` after its last write, and the workers' next heartbeat UNLINKs it)."""
    return keys.result_bucket(ttl_ms, now_ms // max(1, ttl_ms // BUCKETS))


def outcomes_plan(keys: QueueKeys, ids: list[str]) -> Plan[list[list[Any]]]:
    """``[state, value]`` of each of ``ids`` (``[None, None]`` without any record), for
    :func:`decode_outcome`: its own record while it has one (pending, dead, cancelled
    unrun, or written by the django.tasks backend), else the newest live result bucket
    that holds it. Two round trips at most, whatever the number of ids.

    The record is read before the list of buckets: complete.lua deletes the record and
    writes the bucket in one step, so a message whose record is gone is in a bucket
    listed after it (or its result expired).
    """
    commands: list[tuple[Arg, ...]] = [("HMGET", keys.job(i), "s", "v") for i in ids]
    commands.append(("ZRANGE", keys.results, 0, -1))
    replies = yield Step(tuple(commands))
    records: list[list[Any]] = [list(r) for r in replies[:-1]]
    buckets = list(reversed(replies[-1]))  # the latest expiry (newest write) first
    missing = [j for j, r in enumerate(records) if r[0] is None]
    if missing and buckets:
        names = [ids[j] for j in missing]
        found = yield from _in_buckets(buckets, names)
        for j, packed in zip(missing, found, strict=True):
            if packed is not None:
                records[j] = [_UNPACK.get(packed[:1]), packed[1:]]
    return records


def _in_buckets(buckets: list[bytes], ids: list[str]) -> Plan[list[bytes | None]]:
    """Each id's stored outcome in the first of ``buckets`` that has it."""
    commands: tuple[tuple[Arg, ...], ...] = tuple(("HMGET", b, *ids) for b in buckets)
    replies = yield Step(commands)
    if len(commands) == 1:
        replies = [replies]
    found: list[bytes | None] = [None] * len(ids)
    for reply in replies:
        for j, packed in enumerate(reply):
            if found[j] is None and packed is not None:
                found[j] = packed
    return found


def decode_outcome(queue: str, msg_id: str, reply: list[Any]) -> tuple[bool, Any]:
    """``(True, value)`` for a finished message, ``(False, None)`` while it has not.

    :raises ResultNotFound: no record.
    :raises JobFailed: the message died.
    :raises JobCancelled: the message was cancelled.
    """
    state, value = reply[0], reply[1]
    if state is None:
        raise ResultNotFound(queue, msg_id)
    if state == b"ok":
        codec = resolve_codec("msgpack" if value[:1] == b"m" else "json")
        return True, codec.loads(value[1:])
    if state == b"fail":
        data = orjson.loads(value)
        raise JobFailed(
            msg_id, data["type"], data["message"], data["traceback"], data["reason"]
        )
    if state == b"x":
        raise JobCancelled(msg_id)
    return False, None


def status_plan(keys: QueueKeys, msg_id: str) -> Plan[Status]:
    """The status of ``msg_id``: its record's state (a queued or delayed one taken by a
    worker is running; a due delayed one, promoted by a fetch, is queued), else its
    outcome in a result bucket, else unknown."""
    state, due, running, buckets = yield Step(
        (
            ("HGET", keys.job(msg_id), "s"),
            ("ZSCORE", keys.delayed, msg_id),
            ("SISMEMBER", keys.running, msg_id),
            ("ZRANGE", keys.results, 0, -1),
        )
    )
    if state is None:
        if not buckets:
            return Status.UNKNOWN
        found = yield from _in_buckets(list(reversed(buckets)), [msg_id])
        if found[0] is None:
            return Status.UNKNOWN
        state = _UNPACK.get(found[0][:1])
    status = _STATES.get(state, Status.UNKNOWN) if state else Status.UNKNOWN
    if status in (Status.QUEUED, Status.DELAYED) and running:
        return Status.RUNNING
    if status is Status.DELAYED and due is None:
        return Status.QUEUED  # promoted to ready by a fetch, not taken yet
    return status


def cancel_step(keys: QueueKeys, msg_id: str, ttl_ms: int) -> Step:
    """cancel.lua for one message (see its header for the replies)."""
    return Step(
        script="cancel",
        keys=(
            keys.job(msg_id),
            keys.delayed,
            keys.delayed_data,
            keys.cancels,
            keys.stats,
            keys.ready,
            keys.prio,
            keys.running,
        ),
        args=(msg_id, ttl_ms, keys.done),
    )
