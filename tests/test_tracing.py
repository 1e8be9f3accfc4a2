"""OpenTelemetry: the real SDK (in-memory exporter), a real worker process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from redrelay import Message, Relay, tracing

from .worker.helpers import ROOT, wait_for


def traced(
    make_relay: Callable[..., Relay], **kwargs: Any
) -> tuple[Relay, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    relay = make_relay(**kwargs)
    tracing.instrument(relay, tracer_provider=provider)
    tracing.instrument(relay, tracer_provider=provider)  # twice is once
    return relay, exporter, provider


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_handler_span_is_a_child_of_the_producer_span_across_processes(
    make_relay: Callable[..., Relay], redrelay_url: str, tmp_path: Path
) -> None:
    relay, exporter, provider = traced(make_relay)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        ok = relay.queue("traced").put("ok", headers={"user": "7"})
        bad = relay.queue("traced").put("bad")
        coro = relay.queue("traced-async").put("ok")
        relay.topic("events").publish({"n": 1})
    produced = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.PRODUCER
    }
    assert set(produced) >= {ok, bad, coro}
    (request,) = [s for s in exporter.get_finished_spans() if s.name == "request"]
    for span in produced.values():
        assert (
            span.parent is not None and span.parent.span_id == request.context.span_id
        )
        assert span.attributes["messaging.system"] == "redrelay"
        assert span.attributes["messaging.operation.type"] == "create"
    assert produced[ok].name == "create traced"
    assert produced[ok].attributes["messaging.destination.name"] == "traced"
    assert produced[ok].attributes["messaging.operation.name"] == "put"
    (peeked,) = [m for m in relay.queue("traced").peek(10) if m.id == ok]
    assert peeked.headers["user"] == "7"
    assert peeked.headers["traceparent"].split("-")[2] == format(
        produced[ok].context.span_id, "016x"
    )

    spans_file = tmp_path / "spans.jsonl"
    env = dict(os.environ)
    env.update(
        REDRELAY_URL=redrelay_url,
        TEST_NAMESPACE=relay.namespace,
        TEST_SPANS=str(spans_file),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "redrelay", "worker", "tests.apps.traced_app:relay"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        consumed = wait_for(
            lambda: (
                (c := [s for s in read_spans(spans_file) if s["kind"] == "CONSUMER"])
                and len(c) >= 4
                and c
            ),
            timeout=30,
            what="four consumer spans from the worker",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    by_id = {s["attributes"]["messaging.message.id"]: s for s in consumed}
    trace_id = format(request.context.trace_id, "032x")
    for msg_id, producer in produced.items():
        span = by_id[msg_id]
        assert span["pid"] == worker.pid != os.getpid()
        assert span["trace_id"] == trace_id
        assert span["parent"] == format(producer.context.span_id, "016x")
        assert span["attributes"]["messaging.system"] == "redrelay"
        assert span["attributes"]["messaging.operation.type"] == "process"
    assert by_id[ok]["name"] == "process traced"
    assert by_id[ok]["status"] == "UNSET"
    assert by_id[bad]["status"] == "ERROR" and "exception" in by_id[bad]["events"]
    assert by_id[coro]["name"] == "process traced-async"
    (topic_span,) = [s for s in consumed if s["name"] == "process events"]
    assert topic_span["attributes"]["messaging.consumer.group.name"] == "audit"
    assert "messaging.consumer.group.name" not in by_id[ok]["attributes"]


def test_spans_in_process_and_channels(make_relay: Callable[..., Relay]) -> None:
    relay, exporter, _ = traced(make_relay)
    seen: list[Message] = []

    @relay.consumer("local")
    def handle(message: Message) -> None:
        seen.append(message)

    msg_id = relay.queue("local").put(1)
    relay.drain(timeout=10)
    spans = {s.kind: s for s in exporter.get_finished_spans()}
    producer, consumer = spans[SpanKind.PRODUCER], spans[SpanKind.CONSUMER]
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.attributes["messaging.message.id"] == msg_id
    assert seen[0].headers["traceparent"].startswith("00-")
    exporter.clear()
    heard: list[Message] = []

    @relay.subscriber("news")
    def listen(message: Message) -> None:
        heard.append(message)

    relay.start(queues=[])
    try:
        wait_for(
            lambda: relay.publish("news", "hi") and heard, what="a channel message"
        )
    finally:
        relay.stop()
    spans = exporter.get_finished_spans()
    producers = {s.context.span_id: s for s in spans if s.kind == SpanKind.PRODUCER}
    consumers = [s for s in spans if s.kind == SpanKind.CONSUMER]
    assert consumers  # a publish sent before the subscription was heard by no one
    for consumer in consumers:
        assert consumer.name == "process news" and consumer.parent is not None
        producer = producers[consumer.parent.span_id]  # the publish that was heard
        assert producer.name == "create news"
        assert producer.attributes["messaging.operation.name"] == "publish"
        assert consumer.attributes["messaging.destination.name"] == "news"


#: A W3C trace context, as a traced producer would have put it in the headers.
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def pass_on(relay: Relay, asynchronous: bool = False) -> dict[str, dict[str, str]]:
    """Consumers that pass each message of queue "first" on to "second", where its
    headers are kept (by body) in the dict returned; the first an ``async def`` one
    when ``asynchronous``."""
    seen: dict[str, dict[str, str]] = {}

    if asynchronous:

        @relay.consumer("first")
        async def afirst(message: Message) -> None:
            await relay.queue("second").aput(message.body)

    else:

        @relay.consumer("first")
        def first(message: Message) -> None:
            relay.queue("second").put(message.body)

    @relay.consumer("second")
    def second(message: Message) -> None:
        seen[message.body] = dict(message.headers)

    return seen


def test_a_worker_without_sdk_passes_the_trace_on(
    make_relay: Callable[..., Relay],
) -> None:
    """No SDK in the worker (the API's no-op tracer): nothing is recorded, but a message
    its handler puts carries the trace of the message it handles; one without a trace
    starts none."""
    from opentelemetry.trace import NoOpTracerProvider

    relay = make_relay()
    tracing.instrument(relay, tracer_provider=NoOpTracerProvider())
    seen = pass_on(relay)
    relay.queue("first").put("traced", headers={"traceparent": PARENT})
    relay.queue("first").put("plain")
    relay.drain(timeout=30)
    assert seen["traced"]["traceparent"].split("-")[1] == PARENT.split("-")[1]
    assert "traceparent" not in seen["plain"]
