"""The worker app of the fault tests: configured by the environment, every run recorded.

Run as ``python -m redrelay worker tests.faults.app:relay``. The broker is
``REDRELAY_URL``; every handler event goes to ``FAULTS_HISTORY_URL``, a redis-server the
faults never touch (see ``history.py`` for the record format).

Environment: ``FAULTS_NAMESPACE``, ``FAULTS_LEASE`` (seconds), ``FAULTS_HEARTBEAT``,
``FAULTS_PREFETCH``, ``FAULTS_CONCURRENCY``, ``FAULTS_RETRIES``, ``FAULTS_MAX_DELIVERIES``,
``FAULTS_QUEUE`` (the consumed queue, default ``work``; empty: no consumer) and
``FAULTS_CHANNEL`` (also run a subscriber on this channel, recording the ``n`` of each
message's body in ``<namespace>:received`` and every gap report in ``<namespace>:gaps``).

A queue message's body chooses what the handler does: ``{"op": "ok"}`` (the default),
``{"s": 0.5}`` sleeps that long first, ``{"op": "fail"}`` raises, ``{"op": "die"}``
SIGKILLs its own process. Raw bodies are just recorded.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import orjson
import redis

from redrelay import Message, Relay
from redrelay.protocol.transitions import Backoff
from tests.apps.clients import client_of

NAMESPACE = os.environ.get("FAULTS_NAMESPACE", "faults")
LEASE = float(os.environ.get("FAULTS_LEASE", "2"))
QUEUE = os.environ.get("FAULTS_QUEUE", "work")
CHANNEL = os.environ.get("FAULTS_CHANNEL", "")
RUNS = f"{NAMESPACE}:runs"
RECEIVED = f"{NAMESPACE}:received"
GAPS = f"{NAMESPACE}:gaps"


def history() -> redis.Redis:
    return client_of("FAULTS_HISTORY_URL")


def _record_gap(report: Any) -> None:
    history().rpush(
        GAPS,
        orjson.dumps(
            {"missed": report.missed, "reason": report.reason, "t": time.time()}
        ),
    )


relay = Relay(
    namespace=NAMESPACE,
    lease=LEASE,
    heartbeat=float(os.environ.get("FAULTS_HEARTBEAT", str(LEASE / 4))),
    prefetch=int(os.environ.get("FAULTS_PREFETCH", "10")),
    concurrency=int(os.environ.get("FAULTS_CONCURRENCY", "2")),
    retries=int(os.environ.get("FAULTS_RETRIES", "2")),
    max_deliveries=int(os.environ.get("FAULTS_MAX_DELIVERIES", "20")),
    backoff=Backoff(base=0.01, max=0.05),
    on_gap=_record_gap,
)


def _record(message: Message, event: str) -> None:
    history().rpush(
        RUNS, f"{message.id} {os.getpid()} {message.attempt} {event} {time.time():.6f}"
    )


def work(message: Message) -> None:
    body = message.body if isinstance(message.body, dict) else {}
    _record(message, "start")
    if body.get("s"):
        time.sleep(float(body["s"]))
    op = body.get("op", "ok")
    if op == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    elif op == "fail":
        raise RuntimeError("asked to fail")
    _record(message, "done")


def on_event(message: Message) -> None:
    body = message.body
    n = body.get("n") if isinstance(body, dict) else body
    history().rpush(RECEIVED, f"{n} {os.getpid()} {time.time():.6f}")


if QUEUE:
    relay.consumer(QUEUE)(work)
if CHANNEL:
    relay.subscriber(CHANNEL)(on_event)
