"""The message a handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One delivery of a message to a handler. Immutable.

    A body sent by another program (``LPUSH``/``PUBLISH`` of plain bytes) arrives with
    ``raw=True`` and ``body`` as ``bytes``.
    """

    #: Unique, time-sortable id (a raw entry gets one at its first delivery).
    id: str
    #: The decoded body.
    body: Any
    #: String headers (trace context, correlation id ...).
    headers: dict[str, str] = field(default_factory=dict)
    #: Queue name, for queue messages.
    queue: str | None = None
    #: Channel name, for channel messages (the concrete channel for pattern subscriptions).
    channel: str | None = None
    #: 1 for the first delivery; counts every hand-out, including those cut by a crash.
    attempt: int = 1
    #: How many times a handler failed on this message before.
    failures: int = 0
    #: Unix time the producer created it.
    enqueued_at: float = 0.0
    #: Unix time it became (or will become) available to consumers, when delayed.
    available_at: float | None = None
    #: True when the body came from a non-redrelay producer, as bytes.
    raw: bool = False
    #: The lease token of this delivery (``<consumer id>:<n>``); acks carry it.
    delivery_tag: str | None = None
