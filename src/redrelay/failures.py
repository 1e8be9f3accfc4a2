"""Failed deliveries, told once: the log lines and the ``on_failure``/``on_dead`` hooks.

Every handler failure of a queue, a topic group or a channel subscriber goes through
:func:`report_failure`, and every dead letter through :func:`report_dead`, so the three
cannot differ:

- a failure is one WARNING line with the exception and its traceback (a retry says when);
  a channel subscriber's failure is final (pub/sub has no retries), so it is an ERROR;
- a dead letter is one ERROR line with the reason and the traceback of the last error;
- ``Retry(count=False)`` is no failure: one INFO line, no hook;
- then ``Relay(on_failure=...)`` / ``Relay(on_dead=...)`` is called with a
  :class:`Failure` (a hook that raises is logged, never fatal). Sentry in one line::

      relay = Relay(on_failure=lambda f: sentry_sdk.capture_exception(f.error))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import Retry

if TYPE_CHECKING:
    from .message import Message
    from .relay import Relay

__all__ = ["Failure", "Hook", "report_dead", "report_failure", "report_handled"]

log = logging.getLogger("redrelay.worker")
#: Channel subscribers' failures go where the rest of pub/sub logs.
channel_log = logging.getLogger("redrelay.channel")


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One failed delivery, as the ``on_failure`` and ``on_dead`` hooks get it."""

    #: Where it failed: ``"queue"``, ``"topic"`` (a topic group) or ``"channel"``.
    kind: Literal["queue", "topic", "channel"]
    #: The queue, ``topic/group`` or channel name.
    name: str
    #: The message (None for an entry that could not be decoded).
    message: Message | None
    #: What the handler raised (any ``BaseException``); None when the delivery never
    #: reached a handler (malformed entry, ``max_deliveries`` exceeded).
    error: BaseException | None
    #: The delivery attempt, 1 for the first.
    attempt: int
    #: Seconds until the retry, when it is retried.
    retry_in: float | None = None
    #: True for a dead letter (the ``on_dead`` hook); ``reason`` says why.
    dead: bool = False
    reason: str | None = None


#: ``on_failure`` / ``on_dead``: called on the worker thread that saw the failure.
Hook = Callable[[Failure], Any]


def report_failure(relay: Relay, failure: Failure) -> None:
    """Log a handler failure at WARNING (with its traceback) and call ``on_failure``.

    The last failure before a dead letter is logged by :func:`report_dead` instead
    (one ERROR line, not two); ``on_failure`` is called for it all the same.
    """
    error = failure.error
    what = f"{type(error).__name__}: {error}" if error is not None else "no error"
    msg_id = failure.message.id if failure.message is not None else "?"
    if isinstance(error, Retry) and not error.count:
        # Asked for by the handler and not counted as a failed attempt: no failure.
        log.info(
            "%s %s: message %s: the handler asked for a retry (%s) in %.2fs",
            failure.kind, failure.name, msg_id, error, failure.retry_in or 0.0,
        )  # fmt: skip
        return
    level, then = logging.WARNING, ""
    if failure.kind == "channel":
        # Final, as a dead letter is: pub/sub has no retries.
        level, then = logging.ERROR, "not retried (channels are at-most-once)"
    elif failure.retry_in is not None:
        then = f"retrying in {failure.retry_in:.2f}s"
    if then:  # else the dead letter's ERROR line says it, with this traceback
        (channel_log if failure.kind == "channel" else log).log(
            level,
            "%s %s: message %s failed (attempt %d, %s); %s",
            failure.kind, failure.name, msg_id, failure.attempt, what, then,
            exc_info=error,
        )  # fmt: skip
    _call(relay.on_failure, failure, "on_failure")


def report_dead(relay: Relay, failure: Failure) -> None:
    """Log a dead letter at ERROR (with the last error's traceback) and call ``on_dead``."""
    msg_id = failure.message.id if failure.message is not None else "?"
    log.error(
        "%s %s: message %s dead-lettered: %s",
        failure.kind, failure.name, msg_id, failure.reason,
        exc_info=failure.error,
    )  # fmt: skip
    _call(relay.on_dead, failure, "on_dead")


def _call(hook: Hook | None, failure: Failure, name: str) -> None:
    if hook is None:
        return
    try:
        hook(failure)
    except Exception:
        log.exception("the %s hook raised on %s %s", name, failure.kind, failure.name)


#: The ``relay.drain()`` running now on a relay (by ``id``), told of failures that a
#: handler records itself instead of raising (see :func:`report_handled`).
drain_sinks: dict[int, Callable[[str, Message, BaseException], None]] = {}


def report_handled(
    relay: Relay, where: str, message: Message, error: BaseException
) -> None:
    """Tell a running ``relay.drain()`` of a failure its handler recorded and did not
    raise: a ``django.tasks`` task that ends ``FAILED`` is a result, not a redrelay
    retry, yet a test that drains it must fail (``DrainFailed``) as for any handler.
    Outside a drain it does nothing (the worker's logs come from the handler's code).
    """
    sink = drain_sinks.get(id(relay))
    if sink is not None:
        sink(where, message, error)
