"""Server-sent-event frames: how messages and gaps are written on an event stream.

Pure functions shared by :mod:`redrelay.contrib.sse` (channels) and
:mod:`redrelay.contrib.topic_sse` (topics). Every body is JSON on one ``data:`` line
(raw bodies split on line breaks), so a message can never inject a frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from ..gaps import GapReport
from ..message import Message

__all__ = ["EVENT_HEADER", "KEEPALIVE_FRAME"]

#: The message header whose value becomes the SSE ``event:`` type.
EVENT_HEADER = "event"

#: What an idle stream sends: a comment, ignored by browsers, that keeps proxies from
#: timing the connection out and lets the server notice a client that left.
KEEPALIVE_FRAME = b": keep-alive\n\n"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _render(channel: str, items: Iterable[object], dropped: int, size: int) -> bytes:
    parts: list[str] = []
    if dropped:
        parts.append(
            _gap_frame(
                channel,
                dropped,
                f"this client was too slow: its buffer of {size} messages was full, "
                f"so the oldest {dropped} were dropped",
            )
        )
    for item in items:
        if isinstance(item, Message):
            parts.append(_message_frame(item))
        elif isinstance(item, GapReport):
            parts.append(_gap_frame(channel, item.missed, item.reason))
    return "".join(parts).encode()


def _message_frame(message: Message) -> str:
    lines = [f"id: {message.id}"]
    event = message.headers.get(EVENT_HEADER)
    if event and not _LINE_BREAK.search(event):
        lines.append(f"event: {event}")
    if message.raw:
        body = message.body
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    else:
        lines.append(f"data: {_json(message.body)}")
    return "\n".join(lines) + "\n\n"


def _gap_frame(channel: str, missed: int | None, reason: str) -> str:
    data = _json({"channel": channel, "missed": missed, "reason": reason})
    return f"event: gap\ndata: {data}\n\n"


def _json(value: Any) -> str:
    # orjson escapes line breaks inside strings, so the result is one data: line.
    return orjson.dumps(value, default=_jsonable).decode()


def _jsonable(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
