"""redrelay at default settings for ``bench/limit.py`` (options only when asked for).

Environment: BENCH_REDIS_URL; BENCH_PREFETCH (unset: the default); BENCH_ASYNC=1 for an
``async def`` handler; BENCH_SLEEP (seconds each handler waits); BENCH_CONCURRENCY;
BENCH_RESULT_TTL (seconds: the consumer stores its results); BENCH_OBSERVE: ``metrics``,
``metrics+otel-api`` (tracing with the OpenTelemetry API alone, no SDK), or
``metrics+otel-sdk`` (the SDK sampling 1 % of traces, parent-based, into a no-op exporter).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from redrelay import Message, Relay

from .._common import QUEUE, tick

relay = Relay(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
options: dict[str, Any] = {}
if os.environ.get("BENCH_PREFETCH"):
    options["prefetch"] = int(os.environ["BENCH_PREFETCH"])
if os.environ.get("BENCH_CONCURRENCY"):
    options["concurrency"] = int(os.environ["BENCH_CONCURRENCY"])
if os.environ.get("BENCH_RESULT_TTL"):
    options["result_ttl"] = float(os.environ["BENCH_RESULT_TTL"])
SLEEP = float(os.environ.get("BENCH_SLEEP", "0"))
OBSERVE = os.environ.get("BENCH_OBSERVE", "")
if OBSERVE.startswith("metrics"):
    from redrelay import metrics

    metrics.instrument(relay)
if "otel-sdk" in OBSERVE:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from redrelay import tracing

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
    tracing.instrument(relay, tracer_provider=provider)
elif "otel-api" in OBSERVE:
    from redrelay import tracing

    tracing.instrument(relay)  # no SDK configured: the API's no-op spans


_lock = threading.Lock()  # several handler threads: tick() counts one call at a time


def noop(message: Message) -> None:
    if SLEEP:
        time.sleep(SLEEP)
        with _lock:
            tick()
    else:
        tick()


async def anoop(message: Message) -> None:
    if SLEEP:
        await asyncio.sleep(SLEEP)
    tick()


relay.consumer(QUEUE, **options)(anoop if os.environ.get("BENCH_ASYNC") else noop)
