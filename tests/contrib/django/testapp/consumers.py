"""Handlers of the test app, found by autodiscovery. Each records what it ran in Redis
(``<namespace>:test:runs``: "<queue or channel> <message id> <pid> <event>")."""

from __future__ import annotations

import os
import time

from redrelay import Message
from redrelay.contrib.django import consumer, get_relay, subscriber


def record(message: Message, event: str) -> None:
    relay = get_relay()
    where = message.queue or message.channel or message.topic
    relay.connection.call(
        "RPUSH",
        f"{relay.namespace}:test:runs",
        f"{where} {message.id} {os.getpid()} {event}",
    )


@consumer("jobs")
def job(message: Message) -> None:
    record(message, "start")
    body = message.body if isinstance(message.body, dict) else {}
    if body.get("op") == "sleep":
        time.sleep(float(body["s"]))
    elif body.get("op") == "fail":
        raise RuntimeError("asked to fail")
    record(message, "done")


@subscriber("news")
def news(message: Message) -> None:
    record(message, "heard")


@subscriber("orders", group="audit")
def audit(message: Message) -> None:
    record(message, "heard")
