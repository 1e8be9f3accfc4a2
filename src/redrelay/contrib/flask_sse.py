"""Server-sent events for Flask: the blueprint of :meth:`RedRelay.sse_blueprint`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, request

from ..errors import InvalidName
from ..protocol.keys import validate_name
from .sse import hub_for
from .topic_sse import stream_topic

if TYPE_CHECKING:
    from .flask import RedRelay

__all__ = ["create_sse_blueprint"]


def create_sse_blueprint(
    ext: RedRelay,
    *,
    url_prefix: str = "/events",
    authorize: Callable[[str], bool] | None = None,
    name: str = "redrelay_sse",
) -> Blueprint:
    """A blueprint serving ``GET <url_prefix>/<channel>`` as a ``text/event-stream``.

    Every stream of a process shares one Redis subscription (see
    :mod:`redrelay.contrib.sse`); it works under any threaded WSGI server, each open
    stream holding one request thread. Frames: ``id:`` the message id, ``event:`` the
    message's ``event`` header, ``data:`` the body as JSON; ``event: gap`` when messages
    were lost. Settings: ``REDRELAY_SSE_KEEPALIVE``, ``_SSE_RETRY_MS``, ``_SSE_BUFFER``.

    Authorization is the app's: ``authorize(channel)`` runs in the request context
    (``request``, ``session``, ``flask_login.current_user`` ...) and returns whether the
    client may watch the channel; False answers 403. The default lets everyone watch
    every channel of the namespace, which suits public channels only.

    Example::

        def authorize(channel):
            return channel == "news" or channel == f"user.{current_user.id}"

        app.register_blueprint(broker.sse_blueprint(authorize=authorize))

    An invalid channel name answers 404. ``GET <url_prefix>/topics/<topic>`` streams a
    durable topic instead, resuming after the browser's ``Last-Event-ID`` (see
    :mod:`redrelay.contrib.topic_sse`); ``authorize`` is asked about ``"topics/<topic>"``.
    """
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    @bp.get("/topics/<topic>")
    def topic_events(topic: str) -> Response:
        try:
            validate_name("topic", topic)
        except InvalidName:
            abort(404)
        if authorize is not None and not authorize(f"topics/{topic}"):
            abort(403)
        state = ext.state()
        body = stream_topic(
            state.relay,
            topic,
            last_event_id=request.headers.get("Last-Event-ID"),
            keepalive=state.sse_keepalive,
            retry_ms=state.sse_retry_ms,
        )
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(body, mimetype="text/event-stream", headers=headers)

    @bp.get("/<channel>")
    def events(channel: str) -> Response:
        try:
            validate_name("channel", channel)
        except InvalidName:
            abort(404)
        if authorize is not None and not authorize(channel):
            abort(403)
        state = ext.state()
        body = hub_for(state.relay).stream(
            channel,
            keepalive=state.sse_keepalive,
            retry_ms=state.sse_retry_ms,
            buffer=state.sse_buffer,
            last_event_id=request.headers.get("Last-Event-ID"),
        )
        return Response(
            body,
            mimetype="text/event-stream",
            # no-cache: proxies must not hold the stream; X-Accel-Buffering: nginx
            # must pass each frame on at once.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return bp
