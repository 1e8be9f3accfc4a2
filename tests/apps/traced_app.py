"""A traced and metered relay for worker subprocesses: the real OpenTelemetry SDK with its
in-memory exporter, teed to a JSON-lines file (TEST_SPANS) so the test process can read
the spans; Prometheus histograms through PROMETHEUS_MULTIPROC_DIR when it is set.

Environment: REDRELAY_URL, TEST_NAMESPACE, TEST_SPANS, PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from redrelay import Message, Relay, metrics, tracing


class TeeExporter(InMemorySpanExporter):
    """The SDK's in-memory exporter, also appending each span to a file."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        path = os.environ.get("TEST_SPANS")
        if not path:
            return super().export(spans)
        with open(path, "a") as out:
            for s in spans:
                ctx = s.context
                assert ctx is not None
                out.write(
                    json.dumps(
                        {
                            "name": s.name,
                            "kind": s.kind.name,
                            "trace_id": format(ctx.trace_id, "032x"),
                            "span_id": format(ctx.span_id, "016x"),
                            "parent": format(s.parent.span_id, "016x")
                            if s.parent
                            else None,
                            "attributes": dict(s.attributes or {}),
                            "status": s.status.status_code.name,
                            "events": [e.name for e in s.events],
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )
        return super().export(spans)


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(TeeExporter()))

relay = Relay(
    os.environ.get("REDRELAY_URL"),
    namespace=os.environ.get("TEST_NAMESPACE", "traced-app"),
    retries=0,
)
tracing.instrument(relay, tracer_provider=provider)
metrics.instrument(relay)


@relay.consumer("traced")
def handle(message: Message) -> None:
    if message.body == "bad":
        raise RuntimeError("bad body")


@relay.consumer("traced-async")
async def ahandle(message: Message) -> None:
    pass


@relay.subscriber("events", group="audit", start="beginning")
def audit(message: Message) -> None:
    pass
