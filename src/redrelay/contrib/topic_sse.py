"""Server-sent events from a durable topic, resumable with the browser's ``Last-Event-ID``.

A channel stream (:mod:`redrelay.contrib.sse`) loses what was published while a browser
was away. A topic keeps its entries (within its retention), so a topic stream reads the
stream itself (plain ``XREAD`` from an id, no consumer group) and each event's ``id:``
is the entry's stream id: when ``EventSource`` reconnects it sends that id back as
``Last-Event-ID`` and the stream resumes right after it, missing nothing. If retention
already trimmed entries after that id, an ``event: gap`` frame says so.

Each open topic stream holds one Redis connection, blocked in ``XREAD`` (the channel hub
shares one subscription instead); size the Redis ``maxclients`` and the web server's
threads for the number of open streams. WSGI apps use :func:`stream_topic`; ASGI apps
:func:`redrelay.contrib.asgi.topic_events` (the same code, driven by ``redis.asyncio``).

Frames::

    id: <stream id>
    event: <the message's "event" header, if any>
    data: <the body as JSON; a raw body as text>

Entries requeued from one group's dead letters are not streamed (they are not new).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DecodeError
from ..protocol.envelope import decode_entry
from ..protocol.requests import Step
from ..topic import pairs, text
from .sse import DEFAULT_KEEPALIVE, DEFAULT_RETRY_MS
from .sse_frames import EVENT_HEADER, KEEPALIVE_FRAME, _gap_frame, _json

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..relay import Relay

__all__ = ["Script", "stream_topic", "topic_script"]

#: A topic stream: yields requests (answered with their reply) and frames (bytes).
Script = Generator["Step | bytes", Any, None]

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}\Z")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: Entries read per XREAD.
BATCH = 100


def stream_topic(
    relay: Relay,
    topic: str,
    *,
    last_event_id: str | None = None,
    start: str = "now",
    keepalive: float = DEFAULT_KEEPALIVE,
    retry_ms: int | None = DEFAULT_RETRY_MS,
) -> Generator[bytes, None, None]:
    """The body of a ``text/event-stream`` response for ``topic``: UTF-8 frames.

    :param topic: the topic's name; validated now.
    :param last_event_id: the request's ``Last-Event-ID`` header: resume after it. An
        id that is not a stream id is ignored (the stream starts at ``start``).
    :param start: without a valid ``last_event_id``: ``"now"`` (only new entries) or
        ``"beginning"`` (everything the topic still keeps).
    :param keepalive: seconds without a frame before a ``: keep-alive`` comment.
    :param retry_ms: the browser's reconnection delay; None sends none.
    :raises InvalidName: ``topic`` is not a valid name.
    """
    script = topic_script(relay, topic, last_event_id, start, keepalive, retry_ms)
    return _run(relay.new_connection(socket_timeout=keepalive + 10), script)


def _run(conn: Connection, script: Script) -> Generator[bytes, None, None]:
    """Drive a :func:`topic_script` on a blocking connection of its own."""
    try:
        reply: Any = None
        while True:
            item = script.send(reply)
            if isinstance(item, Step):
                reply = conn.send((item,))
            else:
                reply = None
                yield item
    finally:
        conn.close()


def topic_script(
    relay: Relay,
    topic: str,
    last_event_id: str | None,
    start: str,
    keepalive: float,
    retry_ms: int | None,
) -> Script:
    """The one copy of a topic stream, for the WSGI (:func:`stream_topic`) and the ASGI
    (:func:`redrelay.contrib.asgi.topic_events`) drivers: it yields the Redis requests
    it needs (:class:`Step`, answered with the reply) and the frames to send (bytes).

    Arguments as :func:`stream_topic`; they are checked here, before anything is sent.
    """
    t = relay.topic(topic)
    if start not in ("now", "beginning"):
        raise ConfigurationError(f'start= must be "now" or "beginning", got {start!r}')
    if not keepalive > 0:
        raise ConfigurationError(f"keepalive= must be > 0 seconds, got {keepalive!r}")
    resume = (
        last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else None
    )
    return _script(relay, t.name, t.keys.stream, resume, start, keepalive, retry_ms)


def _script(
    relay: Relay,
    name: str,
    stream: str,
    resume: str | None,
    start: str,
    keepalive: float,
    retry_ms: int | None,
) -> Script:
    opening = f": redrelay topic {name}\n"
    if retry_ms is not None:
        opening += f"retry: {retry_ms}\n"
    opening += "\n"
    if resume is not None:
        position = resume
        opening += yield from _resume_gap(name, stream, resume)
    elif start == "beginning":
        position = "0-0"
    else:
        last = yield Step((("XREVRANGE", stream, "+", "-", "COUNT", 1),))
        position = last[0][0].decode() if last else "0-0"
    yield opening.encode()
    block = max(1, int(keepalive * 1000))
    read = ("XREAD", "COUNT", BATCH, "BLOCK", block, "STREAMS", stream)
    while True:
        reply = yield Step(((*read, position),))
        if not reply:
            yield KEEPALIVE_FRAME
            continue
        entries = _entries(reply)
        if entries:
            position = text(entries[-1][0])
            frames = "".join(_frame(relay, text(i), f) for i, f in entries)
            if frames:
                yield frames.encode()


def _entries(reply: Any) -> list[Any]:
    """The entries of an XREAD reply for one stream (RESP2 list or RESP3 dict)."""
    if isinstance(reply, dict):
        return list(next(iter(reply.values()), [[]])[0])
    return list(reply[0][1])


def _resume_gap(name: str, stream: str, resume: str) -> Generator[Step, Any, str]:
    """A gap frame if retention trimmed entries that came after ``resume``."""
    first = yield Step((("XRANGE", stream, "-", "+", "COUNT", 1),))
    if not first or not _before(resume, text(first[0][0])):
        return ""
    info = pairs((yield Step((("XINFO", "STREAM", stream),))))
    added, length = info.get("entries-added"), int(info.get("length", 0))
    if added is not None and int(added) <= length:
        return ""  # nothing was ever trimmed: the id was simply before the first entry
    return _gap_frame(
        name,
        None,
        "entries after Last-Event-ID were trimmed by the topic's retention "
        "(maxlen/max_age) before this client came back",
    )


def _before(a: str, b: str) -> bool:
    def key(stream_id: str) -> tuple[int, int]:
        ms, _, seq = stream_id.partition("-")
        return int(ms), int(seq or 0)

    return key(a) < key(b)


def _frame(relay: Relay, sid: str, fields: Any) -> str:
    values = pairs(fields)
    if "g" in values or "e" not in values:
        return ""  # requeued for one group, or not a redrelay entry
    try:
        decoded = decode_entry(values["e"], relay.signing_key)
    except DecodeError:
        return ""  # malformed or forged: never shown to a browser
    lines = [f"id: {sid}"]
    env = decoded.envelope
    if env is None:
        raw = decoded.raw or b""
        lines += [
            f"data: {x}" for x in _LINE_BREAK.split(raw.decode("utf-8", "replace"))
        ]
    else:
        event = (env.get("h") or {}).get(EVENT_HEADER)
        if event and not _LINE_BREAK.search(event):
            lines.append(f"event: {event}")
        lines.append(f"data: {_json(env['b'])}")
    return "\n".join(lines) + "\n\n"
