"""Server-sent events: a browser subscribes to a channel through the Django app.

::

    # urls.py
    from redrelay.contrib.django.views import EventStreamView, sse_view

    urlpatterns = [
        path("events/<str:channel>/", sse_view),                         # any channel
        path("notifications/stream/", EventStreamView.as_view(channel="notifications")),
    ]

    // the page
    new EventSource("/events/notifications/").onmessage = (e) => show(JSON.parse(e.data));

Each process keeps **one** Redis subscription for all its streams (the shared hub of
:mod:`redrelay.contrib.sse`), so open tabs cost memory, not connections. Under WSGI the
response iterates ``hub.stream()`` (each open stream holds a server thread, as any
streaming response does); under ASGI it iterates ``hub.astream()`` on the event loop.

**Who may listen is the app's decision.** Either set ``REDRELAY[alias]["SSE_AUTHORIZE"]``
to a function ``(request, channel) -> bool`` (or its dotted path), or subclass the view
and override :meth:`EventStreamView.authorize`. Without either, the view streams every
channel its URL pattern lets through: mount it with a fixed ``channel=`` or behind your
own checks. A refusal is a 403; an invalid channel name a 404.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseForbidden,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.views import View

from ...errors import InvalidName
from ...protocol.keys import validate_name
from ..sse import hub_for
from ..topic_sse import stream_topic
from .conf import DEFAULT_ALIAS, relay_settings
from .relays import get_relay

__all__ = ["EventStreamView", "sse_view"]


class EventStreamView(View):
    """A ``text/event-stream`` response of one channel's messages.

    The channel is the ``channel`` attribute (``as_view(channel="notifications")``) or
    the ``channel`` URL argument. Frames: ``id:``, optional ``event:`` (the message's
    ``event`` header), ``data:`` (the JSON body); ``event: gap`` when messages were lost;
    a keep-alive comment when idle.

    :cvar channel: a fixed channel (else the URL's ``channel`` argument).
    :cvar relay: the ``REDRELAY`` alias.
    :cvar keepalive: seconds between keep-alive comments (default ``SSE_KEEPALIVE``).
    """

    channel: str | None = None
    #: a durable topic to stream instead (resumes after ``Last-Event-ID``; WSGI only)
    topic: str | None = None
    relay: str = DEFAULT_ALIAS
    keepalive: float | None = None
    http_method_names = ["get"]

    def get(
        self, request: HttpRequest, channel: str | None = None, **kwargs: Any
    ) -> HttpResponseBase:
        topic = self.topic or kwargs.get("topic")
        if topic is not None:
            return self.topic_stream(request, topic)
        name = self.channel or channel
        if name is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs a channel: as_view(channel='...') or a "
                "<str:channel> URL argument"
            )
        try:
            validate_name("channel", name)
        except InvalidName as exc:
            raise Http404(str(exc)) from exc
        if not self.authorize(request, name):
            return HttpResponseForbidden(f"not allowed to watch channel {name!r}")
        return self.stream(request, name)

    def topic_stream(self, request: HttpRequest, topic: str) -> HttpResponseBase:
        """A topic's stream (``as_view(topic=...)`` or a ``<str:topic>`` URL argument);
        ``authorize`` is asked about ``"topics/<topic>"``."""
        try:
            validate_name("topic", topic)
        except InvalidName as exc:
            raise Http404(str(exc)) from exc
        if not self.authorize(request, f"topics/{topic}"):
            return HttpResponseForbidden(f"not allowed to watch topic {topic!r}")
        body = stream_topic(
            get_relay(self.relay),
            topic,
            last_event_id=request.headers.get("Last-Event-ID"),
            keepalive=self.keepalive or relay_settings(self.relay).sse_keepalive,
        )
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    def authorize(self, request: HttpRequest, channel: str) -> bool:
        """May this request watch ``channel``? ``SSE_AUTHORIZE`` decides, else yes.

        Override in a subclass for per-view rules, e.g.
        ``return request.user.is_authenticated``.
        """
        authorize = relay_settings(self.relay).authorizer()
        return True if authorize is None else bool(authorize(request, channel))

    def stream(self, request: HttpRequest, channel: str) -> StreamingHttpResponse:
        """The streaming response (an async body under ASGI, a sync one under WSGI)."""
        from django.core.handlers.asgi import ASGIRequest

        keepalive = self.keepalive or relay_settings(self.relay).sse_keepalive
        hub = hub_for(get_relay(self.relay))
        last_event_id = request.headers.get("Last-Event-ID")
        body: Any
        if isinstance(request, ASGIRequest):
            body = hub.astream(
                channel, keepalive=keepalive, last_event_id=last_event_id
            )
        else:
            body = hub.stream(channel, keepalive=keepalive, last_event_id=last_event_id)
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response


#: ``EventStreamView.as_view()``: the channel comes from the URL's ``channel`` argument.
sse_view = EventStreamView.as_view()
