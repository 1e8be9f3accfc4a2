"""The message a handler receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Cancelled

__all__ = ["Message", "MessageId"]


class MessageId(str):
    """What ``queue.put`` returns: the message's id (a ``str``), and whether the put was
    a duplicate.

    ``duplicate`` is True when the put's ``dedup_key=`` was already taken within the
    relay's ``dedup_ttl``: nothing was written, and this is the earlier message's id.

    Example::

        sent = relay.queue("emails").put(body, dedup_key=f"welcome:{user.id}")
        if sent.duplicate:
            log.info("welcome mail already queued as %s", sent)
    """

    duplicate: bool

    def __new__(cls, value: str, *, duplicate: bool = False) -> MessageId:
        self = super().__new__(cls, value)
        self.duplicate = duplicate
        return self


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
    #: When the producer created it: Unix time in seconds, a ``float`` (for a datetime:
    #: ``datetime.fromtimestamp(message.enqueued_at, timezone.utc)``).
    enqueued_at: float = 0.0
    #: Unix time (float seconds) it became (or will become) available to consumers, when
    #: delayed.
    available_at: float | None = None
    #: True when the body came from a non-redrelay producer, as bytes.
    raw: bool = False
    #: The lease token of this delivery (``<consumer id>:<n>``); acks carry it.
    delivery_tag: str | None = None
    #: Topic name, for topic messages (``id`` is the envelope's; see ``stream_id``).
    topic: str | None = None
    #: The entry's stream id, for topic messages (replay from it, SSE ``Last-Event-ID``).
    stream_id: str | None = None
    #: The consumer group that received it, for topic messages.
    group: str | None = None
    #: Set by the worker for a consumer with ``result_ttl=``: is this id cancelled?
    _cancel: Callable[[str], bool] | None = field(
        default=None, repr=False, compare=False
    )

    def cancelled(self) -> bool:
        """Whether ``queue.cancel(id)`` asked this message to stop (seen within a heartbeat).

        Only a consumer declared with ``result_ttl=`` tracks cancellations; elsewhere this
        is always False. A long handler checks it between steps and returns early.
        """
        return self._cancel is not None and self._cancel(self.id)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancelled`; the worker then records the
        message as cancelled (not a failure, no retry)."""
        if self._cancel is not None and self._cancel(self.id):
            raise Cancelled(f"message {self.id} was cancelled")


#: Sets the slot of a frozen Message (the slot's descriptor; used by bind_cancel).
_set_cancel = vars(Message)["_cancel"].__set__


class _Blank:
    """The layout of :class:`Message` (the same slots, in the same order) with a plain
    ``__init__``: :func:`make_message` builds one and makes it a Message."""

    __slots__ = Message.__slots__

    def __init__(
        self,
        id: str,
        body: Any,
        headers: dict[str, str],
        queue: str | None,
        channel: str | None,
        attempt: int,
        failures: int,
        enqueued_at: float,
        available_at: float | None,
        raw: bool,
        delivery_tag: str | None,
        topic: str | None,
        stream_id: str | None,
        group: str | None,
    ) -> None:
        self.id = id
        self.body = body
        self.headers = headers
        self.queue = queue
        self.channel = channel
        self.attempt = attempt
        self.failures = failures
        self.enqueued_at = enqueued_at
        self.available_at = available_at
        self.raw = raw
        self.delivery_tag = delivery_tag
        self.topic = topic
        self.stream_id = stream_id
        self.group = group
        self._cancel = None


def bind_cancel(message: Message, check: Callable[[str], bool]) -> None:
    """Let ``message.cancelled()`` ask ``check(id)`` (the worker's tracker). Internal."""
    _set_cancel(message, check)


def make_message(
    id: str,
    body: Any,
    headers: dict[str, str],
    queue: str | None,
    channel: str | None,
    attempt: int,
    failures: int,
    enqueued_at: float,
    available_at: float | None,
    raw: bool,
    delivery_tag: str | None,
    topic: str | None = None,
    stream_id: str | None = None,
    group: str | None = None,
) -> Message:
    """Build a Message about 4x faster than its frozen dataclass ``__init__``. Internal.

    The worker builds one per delivery, and the generated init of a frozen, slotted,
    kw-only dataclass costs about 3 us: alone, that would cap a consumer thread near
    300k msg/s. A :class:`_Blank` has the same slots and a plain ``__init__``; assigning
    its ``__class__`` (allowed between classes of the same layout) makes it a Message,
    frozen from then on.
    """
    message = _Blank(
        id, body, headers, queue, channel, attempt, failures, enqueued_at,
        available_at, raw, delivery_tag, topic, stream_id, group,
    )  # fmt: skip
    message.__class__ = Message  # type: ignore[assignment]
    return message  # type: ignore[return-value]


def first_delivery(
    env: dict[str, Any],
    queue: str | None,
    tag: str,
    topic: str | None = None,
    stream_id: str | None = None,
    group: str | None = None,
) -> Message:
    """The Message of a first delivery from a fresh JSON envelope (``i``, ``b``, ``h``,
    ``t``): the one construction of the worker's fast paths (queue threads, async runs,
    topic batches), as :func:`make_message` builds it."""
    message = _Blank(
        env["i"], env["b"], env.get("h") or {}, queue, None, 1, 0,
        env.get("t", 0) / 1000, None, False, tag, topic, stream_id, group,
    )  # fmt: skip
    message.__class__ = Message  # type: ignore[assignment]
    return message  # type: ignore[return-value]
