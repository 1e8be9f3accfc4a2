"""OpenTelemetry traces: ``pip install 'redrelay[otel]'``.

:func:`instrument` makes a relay emit, following the OpenTelemetry messaging semantic
conventions:

- a PRODUCER span ``create <destination>`` for every message put on a queue or published
  on a topic or channel, whose context travels in the message headers as W3C
  ``traceparent`` (and ``tracestate``), through the globally configured propagator;
- a CONSUMER span ``process <destination>`` around every handler run, a child of the
  producer's span even when the handler runs in another process or on another machine.

The producer span covers the creation of the message (the semantic conventions' "create"
operation), not the Redis round trip: the hook runs where every queue, topic and channel
envelope is built, one place for the sync, async, single and batch paths. With only
``opentelemetry-api`` installed (no SDK configured) every span is a no-op.

Usage::

    from redrelay import tracing
    tracing.instrument(relay)   # in the web app and in the worker's app module
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "redrelay.tracing needs opentelemetry-api: pip install 'redrelay[otel]'"
    ) from exc

from .message import Message

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["SYSTEM", "instrument"]

#: The ``messaging.system`` attribute of every span.
SYSTEM = "redrelay"

#: ``messaging.operation.name`` of the producer span, by destination kind.
_SEND_NAMES = {"queue": "put", "topic": "publish", "channel": "publish"}


def instrument(relay: Relay, *, tracer_provider: Any = None) -> None:
    """Emit a PRODUCER span per outgoing message and a CONSUMER span per handler run.

    Call it once per relay, in every process that produces or consumes (the web app and
    the module the worker imports). Handlers see the consumer span as the current span,
    so their own spans nest under it.

    :param tracer_provider: the provider to use; the global one when None.
    """
    if any(getattr(h, "redrelay_tracing", False) for h in relay.envelope_hooks):
        return  # twice would nest a second producer span and a second consumer span
    tracer = trace.get_tracer("redrelay", tracer_provider=tracer_provider)

    def produce(kind: str, name: str, envelope: dict[str, Any]) -> None:
        # Attributes only on a recording span: an unsampled or no-op span (no SDK)
        # then costs a few microseconds, not the building of seven attributes.
        span = tracer.start_span(f"create {name}", kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": name,
                    "messaging.operation.type": "create",
                    "messaging.operation.name": _SEND_NAMES.get(kind, "send"),
                    "messaging.message.id": str(envelope.get("i", "")),
                    "messaging.redrelay.destination.kind": kind,
                }
            )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        span.end()
        if carrier:
            envelope["h"] = {**(envelope.get("h") or {}), **carrier}

    def consume(message: Message) -> _Consume:
        return _Consume(tracer, message)

    if tracer_provider is None:
        # The worker's fast loops enter the consumer span only for messages with headers
        # while no SDK is configured (asked per batch, see redrelay.observers): the API's
        # no-op span records nothing, and only continues a context that a message carries.
        consume.redrelay_headers_only = _no_sdk  # type: ignore[attr-defined]

    produce.redrelay_tracing = True  # type: ignore[attr-defined]
    relay.envelope_hooks.append(produce)
    relay.add_handler_context(consume)


def _no_sdk() -> bool:
    """Whether the global tracer provider is still the API's own (no SDK configured)."""
    return isinstance(
        trace.get_tracer_provider(),
        (trace.ProxyTracerProvider, trace.NoOpTracerProvider),
    )


class _Consume:
    """The CONSUMER span around one handler run (a class, not a generator-based context
    manager: this runs once per message)."""

    __slots__ = ("message", "span", "token", "tracer")

    def __init__(self, tracer: Any, message: Message) -> None:
        self.tracer, self.message = tracer, message

    def __enter__(self) -> None:
        m = self.message
        name = m.queue or m.topic or m.channel or ""
        parent = propagate.extract(m.headers) if m.headers else None
        span = self.tracer.start_span(
            f"process {name}", context=parent, kind=SpanKind.CONSUMER
        )
        if span is INVALID_SPAN:
            # No SDK and no trace to continue: nothing to record or to pass on, and
            # the handler's current span is already the invalid one.
            self.span = None
            return
        if span.is_recording():
            attributes: dict[str, Any] = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": name,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": m.id,
                "messaging.redrelay.attempt": m.attempt,
            }
            if m.group is not None:
                attributes["messaging.consumer.group.name"] = m.group
            span.set_attributes(attributes)
        self.span = span
        self.token = context.attach(trace.set_span_in_context(span))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        if span is None:
            return
        try:
            if exc is not None and span.is_recording():
                span.record_exception(exc)
                span.set_status(
                    Status(
                        StatusCode.ERROR,
                        f"{exc_type.__name__}: {exc}" if exc_type else str(exc),
                    )
                )
        finally:
            context.detach(self.token)
            span.end()
