"""Results, status and cancellation of tracked messages: the decisions, once for sync and async.

A *tracked* message has a record, the hash ``QueueKeys.job(id)``: field ``s`` holds its
state (``q`` queued, ``d`` delayed, ``r`` running, ``ok``, ``fail``, ``x`` cancelled),
``v`` the encoded return value or the failure (JSON), ``e`` a copy of the entry while it
is queued (cancel.lua removes it from the queue by value; a cancel of a message a worker
took goes to the queue's ``cancels`` set instead). The producer writes it in the same transaction as the put; the worker
marks it running (complete.lua, with the previous batch's acks), and the ack writes the
outcome (complete.lua; bury.lua for a death), so a result never exists without its ack.
Finished records expire after the consumer's ``result_ttl``; pending ones after
:data:`PENDING_TTL_MS`, a safety net only (a tracked message always finishes, and the
finish sets the result TTL).
"""

from __future__ import annotations

import enum
import traceback
from typing import Any

import orjson

from ..codecs import Codec, resolve_codec
from ..errors import ConfigurationError, JobCancelled, JobFailed, ResultNotFound
from .keys import QueueKeys
from .requests import Arg, Step

__all__ = [
    "PENDING_TTL_MS",
    "Status",
    "cancel_step",
    "check_id",
    "decode_outcome",
    "encode_value",
    "failure_record",
    "read_step",
    "status_of",
    "status_step",
    "track_commands",
]

#: How long the record of a message that has not finished lives (30 days, in ms).
PENDING_TTL_MS = 30 * 86400 * 1000


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


def read_step(keys: QueueKeys, msg_id: str) -> Step:
    """Read a record's state and value (one round trip)."""
    return Step((("HMGET", keys.job(msg_id), "s", "v"),))


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


def status_step(keys: QueueKeys, msg_id: str) -> Step:
    """Read what :func:`status_of` needs: the state, and whether it is still delayed."""
    return Step(
        (("HGET", keys.job(msg_id), "s"), ("ZSCORE", keys.delayed, msg_id)),
    )


def status_of(reply: list[Any]) -> Status:
    """The status from :func:`status_step`'s reply (a due delayed message is queued)."""
    state = _STATES.get(reply[0], Status.UNKNOWN) if reply[0] else Status.UNKNOWN
    if state is Status.DELAYED and reply[1] is None:
        return Status.QUEUED  # promoted to ready by a fetch, not taken yet
    return state


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
        ),
        args=(msg_id, ttl_ms, keys.done),
    )
