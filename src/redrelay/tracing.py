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

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind
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
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": name,
            "messaging.operation.type": "create",
            "messaging.operation.name": _SEND_NAMES.get(kind, "send"),
            "messaging.message.id": str(envelope.get("i", "")),
            "messaging.redrelay.destination.kind": kind,
        }
        with tracer.start_as_current_span(
            f"create {name}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if carrier:
                envelope["h"] = {**(envelope.get("h") or {}), **carrier}

    @contextlib.contextmanager
    def consume(message: Message) -> Iterator[None]:
        name = message.queue or message.topic or message.channel or ""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": name,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": message.id,
            "messaging.redrelay.attempt": message.attempt,
        }
        if message.group is not None:
            attributes["messaging.consumer.group.name"] = message.group
        parent = propagate.extract(message.headers)
        with tracer.start_as_current_span(
            f"process {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            yield

    produce.redrelay_tracing = True  # type: ignore[attr-defined]
    relay.envelope_hooks.append(produce)
    relay.add_handler_context(consume)
