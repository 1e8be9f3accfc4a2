"""The whole redrelay exception tree.

::

    RedrelayError
    ├── ConfigurationError (ValueError)      bad settings, bad URL, bad handler options
    ├── InvalidName (ValueError)             a queue/channel name that could escape the namespace
    ├── BrokerUnavailable                    Redis unreachable after bounded retries (wraps redis errors)
    │   └── BrokerLoading                    Redis is still loading its data set
    ├── BrokerError                          Redis answered with an error
    │   ├── BrokerFull                       Redis is out of memory (maxmemory with noeviction)
    │   └── DurabilityNotConfirmed           written, but WAIT/WAITAOF did not confirm it in time
    ├── MessageError
    │   ├── EncodeError (TypeError)          the codec cannot encode the body (names the type)
    │   ├── MessageTooLarge (ValueError)     over max_message_size; nothing was written
    │   ├── DecodeError                      an entry that cannot be decoded (keeps raw bytes)
    │   └── SignatureError                   an unsigned or forged envelope
    ├── NotFound (LookupError)
    │   ├── QueueNotFound
    │   ├── MessageNotFound
    │   └── ResultNotFound                   no record of that id: unknown, or its result expired
    ├── JobFailed                            the awaited message died; its last failure is attached
    ├── JobCancelled                         the awaited message was cancelled
    ├── ResultTimeout (TimeoutError)         ``queue.result(id, timeout=)`` passed its timeout
    ├── Cancelled                            raised inside a handler whose message was cancelled
    ├── DrainTimeout                         ``relay.drain()`` did not empty the queues in time
    ├── DrainFailed (AssertionError)         ``relay.drain()`` saw handlers fail or messages die
    ├── TimeLimitExceeded                    raised inside a handler that ran past its time_limit
    ├── Retry                                raised by a handler: retry later (``delay=``)
    └── Reject                               raised by a handler: dead-letter now, with a reason

Redis exceptions never escape a public call: :mod:`redrelay.io.sync` translates them
here, keeping the original as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BrokerError",
    "Cancelled",
    "BrokerFull",
    "BrokerLoading",
    "BrokerUnavailable",
    "ConfigurationError",
    "DecodeError",
    "DrainFailed",
    "DrainTimeout",
    "DurabilityNotConfirmed",
    "EncodeError",
    "InvalidName",
    "JobCancelled",
    "JobFailed",
    "MessageError",
    "MessageNotFound",
    "MessageTooLarge",
    "NotFound",
    "QueueNotFound",
    "RedrelayError",
    "Reject",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "SignatureError",
    "TimeLimitExceeded",
]


class RedrelayError(Exception):
    """Base of every exception redrelay raises."""


class ConfigurationError(RedrelayError, ValueError):
    """A setting, URL or handler option is invalid."""


class InvalidName(RedrelayError, ValueError):
    """A queue or channel name is not allowed."""

    def __init__(self, kind: str, name: object, why: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"invalid {kind} name {name!r}: {why}")


class BrokerUnavailable(RedrelayError):
    """Redis could not be reached (connection refused, reset or timed out)."""


class BrokerLoading(BrokerUnavailable):
    """Redis is up but still loading its data set into memory."""


class BrokerError(RedrelayError):
    """Redis answered a command with an error."""


class BrokerFull(BrokerError):
    """Redis refused a write because it reached ``maxmemory``; nothing was written."""


class DurabilityNotConfirmed(BrokerError):
    """A durable put WAS written to the primary, but not confirmed where it was asked to be.

    Raised when ``WAIT``/``WAITAOF`` returns fewer replicas (or no local AOF fsync) than
    ``durable=`` asked for within the timeout. The message is in the queue now; it would
    be lost only if the primary failed before the replicas caught up. Never retry blindly:
    a retried put is a second message (use ``dedup_key=`` to make it a no-op).
    """

    def __init__(
        self, ids: list[str], asked: str, confirmed: str, timeout: float
    ) -> None:
        self.ids = ids
        self.asked = asked
        self.confirmed = confirmed
        shown = ids[0] if len(ids) == 1 else f"{len(ids)} messages, first {ids[0]}"
        super().__init__(
            f"the message WAS written ({shown}) but durability was not confirmed: "
            f"asked {asked}, got {confirmed} within {timeout:g}s. It is in the queue, "
            "but a failover now could lose it (check the replicas: INFO replication)."
        )


class MessageError(RedrelayError):
    """Base of the errors about one message."""


class EncodeError(MessageError, TypeError):
    """The codec cannot encode a body (or, with ``result=True``, what a handler returned
    for its stored result: the delivery then fails like a raise, see docs/results.md)."""

    def __init__(
        self, codec: str, value: object, cause: BaseException, *, result: bool = False
    ) -> None:
        self.codec = codec
        self.value_type = type(value).__name__
        if result:
            text = (
                f"the {codec} codec cannot encode the handler's return value ({cause}); "
                f"its type is {self.value_type}. The delivery fails (retried, then "
                "dead-lettered): return JSON-compatible values, or choose another codec."
            )
        else:
            text = (
                f"the {codec} codec cannot encode the body ({cause}); "
                f"body type is {self.value_type}. Nothing was written. "
                "Send JSON-compatible values, or choose another codec (codec=)."
            )
        super().__init__(text)


class MessageTooLarge(MessageError, ValueError):
    """An encoded message is over the relay's size limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message is {size} bytes encoded; the limit is {limit} bytes "
            "(max_message_size=). Nothing was written."
        )


class DecodeError(MessageError):
    """An entry could not be decoded; ``raw`` holds its bytes."""

    def __init__(self, raw: bytes, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"cannot decode entry ({len(raw)} bytes): {reason}")


class SignatureError(DecodeError):
    """An envelope is unsigned or its signature does not match the relay's key."""


class NotFound(RedrelayError, LookupError):
    """Something that was asked for does not exist."""


class QueueNotFound(NotFound):
    """No queue by that name is known."""


class MessageNotFound(NotFound):
    """No message with that id is where it was looked for."""


class ResultNotFound(NotFound):
    """No record of a message: the id is unknown, its result expired, or it was put by a
    producer that does not track results (see docs/results.md)."""

    def __init__(self, queue: str, msg_id: str) -> None:
        self.queue = queue
        self.id = msg_id
        super().__init__(
            f"no result record for message {msg_id!r} on queue {queue!r}: the id is unknown, "
            "its result expired (result_ttl=), or it was put without tracking (declare its "
            "consumer with result_ttl= in the producing process too, or use "
            "relay.queue(name, results=True))"
        )


class JobFailed(RedrelayError):
    """The awaited message died (dead-lettered) after its retries.

    ``error_type`` is the class path of the last exception (``"builtins.ValueError"``),
    ``error_message`` its text and ``traceback`` the formatted traceback (None when the
    message died without running, e.g. over ``max_deliveries``).
    """

    def __init__(
        self,
        msg_id: str,
        error_type: str,
        error_message: str,
        traceback: str | None,
        reason: str = "",
    ) -> None:
        self.id = msg_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.reason = reason
        super().__init__(
            f"message {msg_id} failed: {error_type}: {error_message}"
            + (f" ({reason})" if reason else "")
        )


class JobCancelled(RedrelayError):
    """The awaited message was cancelled (``queue.cancel(id)``) and did not finish."""

    def __init__(self, msg_id: str) -> None:
        self.id = msg_id
        super().__init__(f"message {msg_id} was cancelled")


class ResultTimeout(RedrelayError, TimeoutError):
    """The message did not finish within the ``timeout=`` of a wait; it may still finish."""

    def __init__(self, msg_id: str, timeout: float) -> None:
        self.id = msg_id
        self.timeout = timeout
        super().__init__(
            f"message {msg_id} did not finish within {timeout:g}s; it may still finish: "
            "wait again, or cancel it with queue.cancel(id)"
        )


class Cancelled(RedrelayError):
    """Raised inside a handler by ``message.raise_if_cancelled()`` once its message was
    cancelled; the worker then records the message as cancelled (not a failure)."""


class DrainTimeout(RedrelayError):
    """``relay.drain()`` gave up before the queues were empty."""


class DrainFailed(RedrelayError, AssertionError):
    """``relay.drain()`` drained everything, but handlers failed or messages died.

    An ``AssertionError`` too, so a test fails with the list. ``report`` is the drain's
    :class:`~redrelay.worker.drain.DrainReport`; ``report.failures`` each say where, what
    and the traceback. Opt out with ``relay.drain(raise_on_failure=False)``.
    """

    def __init__(self, report: Any) -> None:
        self.report = report
        failures = report.failures
        lines = [f"{len(failures)} failure(s) while draining:"]
        for f in failures[:10]:
            about = (
                f" message {f.message.id} (attempt {f.message.attempt})"
                if f.message
                else ""
            )
            lines.append(f"- {f.where}{about}: {f.error}")
        if len(failures) > 10:
            lines.append(f"- ... and {len(failures) - 10} more (report.failures)")
        if failures and failures[0].traceback:
            lines.append("first traceback:\n" + failures[0].traceback.rstrip())
        lines.append(
            "Expected failures? relay.drain(raise_on_failure=False) returns the report."
        )
        super().__init__("\n".join(lines))


class TimeLimitExceeded(RedrelayError):
    """Raised inside a handler that ran longer than its consumer's ``time_limit``.

    It counts as a failure (retry with backoff, then dead letter). A handler stuck in C
    code that cannot be interrupted is abandoned instead: see ``time_limit`` in the README.
    """


class Retry(RedrelayError):
    """Raised by a handler to have the message delivered again later.

    Counts as a failed attempt unless ``count=False``.

    :param delay: seconds before the next delivery; ``None`` uses the consumer's backoff.
    """

    def __init__(self, delay: float | None = None, *, count: bool = True) -> None:
        self.delay = delay
        self.count = count
        super().__init__(f"retry requested (delay={delay})")


class Reject(RedrelayError):
    """Raised by a handler to dead-letter the message at once, with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
