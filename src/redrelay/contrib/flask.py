"""Flask integration: the :class:`RedRelay` extension, ``flask relay`` commands, SSE.

Example::

    from flask import Flask
    from redrelay.contrib.flask import RedRelay

    broker = RedRelay()

    @broker.consumer("emails", retries=5)
    def send_email(message):
        mail.send(message.body["to"], ...)   # runs inside an app context

    def create_app():
        app = Flask(__name__)
        app.config["REDRELAY_URL"] = "redis://localhost:6379/0"
        broker.init_app(app)
        app.register_blueprint(broker.sse_blueprint())   # GET /events/<channel>
        return app

    # in a view:  broker.queue("emails").put({"to": "ada@example.com"})
    # run it:     flask --app myapp relay worker

Each app gets its own :class:`~redrelay.Relay`, built from its ``REDRELAY_*`` settings
and stored in ``app.extensions["redrelay"]`` (a :class:`RedRelayState`); the extension
object keeps no app. Handlers registered on the extension are registered on every
app's relay, and run inside that app's context.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

try:
    from flask import Blueprint, Flask, current_app
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"redrelay.contrib.flask needs Flask ({exc}); install it with: pip install 'redrelay[flask]'"
    ) from exc


from ..embedded import default_data_dir
from ..errors import ConfigurationError
from ..handlers import Handler
from ..protocol.keys import validate_name
from ..queue import Queue
from ..relay import Relay
from ._inprocess import start_in_process
from .flask_cli import relay_command
from .flask_sse import create_sse_blueprint as create_sse_blueprint
from .sse import DEFAULT_BUFFER, DEFAULT_KEEPALIVE, DEFAULT_RETRY_MS, EventHub, hub_for

__all__ = ["RedRelay", "RedRelayState", "create_sse_blueprint"]

H = TypeVar("H", bound=Handler)

log = logging.getLogger("redrelay.flask")

#: ``REDRELAY_<KEY>`` settings passed to :class:`~redrelay.Relay` (lowercased).
RELAY_SETTINGS = (
    "url",
    "namespace",
    "codec",
    "max_message_size",
    "dedup_ttl",
    "dead_letter_cap",
    "connect_retries",
    "data_dir",
    "durable",
    "durable_timeout",
    "signing_key",
    "concurrency",
    "prefetch",
    "retries",
    "backoff",
    "lease",
    "heartbeat",
    "max_deliveries",
    "time_limit",
)
#: ``REDRELAY_<KEY>`` settings of the extension itself (lowercased).
APP_SETTINGS = (
    "embedded",
    "start_in_process",
    "sse_keepalive",
    "sse_retry_ms",
    "sse_buffer",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(eq=False, kw_only=True)
class RedRelayState:
    """What :meth:`RedRelay.init_app` stores in ``app.extensions["redrelay"]``."""

    #: The extension that initialised the app.
    ext: RedRelay
    #: The app's relay.
    relay: Relay
    #: ``REDRELAY_START_IN_PROCESS``.
    start_in_process: bool = False
    #: ``REDRELAY_SSE_KEEPALIVE``, ``REDRELAY_SSE_RETRY_MS``, ``REDRELAY_SSE_BUFFER``.
    sse_keepalive: float = DEFAULT_KEEPALIVE
    sse_retry_ms: int | None = DEFAULT_RETRY_MS
    sse_buffer: int = DEFAULT_BUFFER
    started: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class RedRelay:
    """The Flask extension: a relay per app, configured from ``app.config``.

    Create it once at module level, register handlers on it, and call
    :meth:`init_app` in the app factory (or pass ``app`` here).

    :param app: initialise this app now.
    :param relay: use this :class:`~redrelay.Relay` for every app instead of building
        one from the settings (then no ``REDRELAY_*`` setting may configure a relay,
        and handlers run in the context of the app initialised last).
    :param relay_options: defaults for the ``Relay`` of each app (``url``, ``namespace``,
        ``lease`` ..., and the hooks ``on_gap``, ``on_failure``, ``on_dead``); the
        app's ``REDRELAY_*`` settings override them.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        relay: Relay | None = None,
        **relay_options: Any,
    ) -> None:
        allowed = {*RELAY_SETTINGS, "on_gap", "on_failure", "on_dead"}
        unknown = sorted(set(relay_options) - allowed)
        if unknown:
            raise ConfigurationError(
                f"RedRelay() got unknown relay options {unknown}; known: {sorted(allowed)}"
            )
        if relay is not None and relay_options:
            raise ConfigurationError(
                "RedRelay() takes relay= or relay options, not both; configure the Relay you pass"
            )
        self._relay = relay
        self._relay_options = relay_options
        #: Applied to every relay of this extension, now and in future.
        self._registrations: list[Callable[[Relay], None]] = []
        self._relays: weakref.WeakSet[Relay] = weakref.WeakSet()
        #: For relay=: the app whose context handlers run in (the last initialised).
        self._shared_app: weakref.ReferenceType[Flask] | None = None
        if relay is not None:
            self._relays.add(relay)
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<RedRelay {len(self._relays)} relays>"

    # -- setup ----------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Give ``app`` a relay built from its ``REDRELAY_*`` settings.

        Also registers the ``flask relay`` commands and the handler app context.
        ``app.config`` keys read (each optional; ``None`` means unset):

        - ``REDRELAY_URL``: ``redis://``, ``rediss://``, ``unix://``,
          ``redis+sentinel://`` or ``redis+cluster://`` URL. Default: ``$REDRELAY_URL``,
          else, in debug or testing (``app.debug``, ``app.testing`` when ``init_app``
          runs) or with ``REDRELAY_EMBEDDED``, the embedded development server; else
          the first use raises :class:`ConfigurationError`.
        - ``REDRELAY_EMBEDDED``: True to use the embedded server without a URL outside
          debug and testing too (default False).
        - ``REDRELAY_NAMESPACE``: prefix of every key and channel (default ``redrelay``).
        - ``REDRELAY_CODEC``: ``"json"`` (default) or ``"msgpack"``.
        - ``REDRELAY_MAX_MESSAGE_SIZE``: largest encoded message in bytes (default 1 MiB).
        - ``REDRELAY_DEDUP_TTL``: seconds a ``dedup_key=`` is remembered (default 1 day).
        - ``REDRELAY_DEAD_LETTER_CAP``: dead letters kept per queue (default 100000).
        - ``REDRELAY_CONNECT_RETRIES``: retries of a producer call (default 3).
        - ``REDRELAY_DATA_DIR``: the embedded server's directory (default
          ``$REDRELAY_DATA_DIR``, else ``<app.instance_path>/.redrelay``: the app's, not
          the current directory's).
        - ``REDRELAY_DURABLE``, ``REDRELAY_DURABLE_TIMEOUT``: durable puts (default off,
          1 s), see docs/reliability.md.
        - ``REDRELAY_SIGNING_KEY``: a shared secret of 16+ bytes; envelopes are signed and
          unsigned or forged ones are never run (docs/security.md).
        - Consumer defaults, overridden per ``@broker.consumer(...)``:
          ``REDRELAY_CONCURRENCY`` (1), ``REDRELAY_PREFETCH`` (50), ``REDRELAY_RETRIES``
          (3), ``REDRELAY_BACKOFF`` (1.0 s), ``REDRELAY_LEASE`` (10 s),
          ``REDRELAY_HEARTBEAT`` (lease / 4), ``REDRELAY_MAX_DELIVERIES`` (retries + 3),
          ``REDRELAY_TIME_LIMIT`` (None: no limit).
        - ``REDRELAY_START_IN_PROCESS``: run the consumers and subscribers on background
          threads of each process that serves requests (``relay.start()``), started by
          its first request, which waits (5 s at most) until the subscriptions are in
          place so that what it publishes is received; never in ``flask shell``,
          ``flask relay ...`` or the reloader's parent. Default False: run
          ``flask relay worker``. Channel subscribers then run once per process.
        - ``REDRELAY_SSE_KEEPALIVE``: seconds between keep-alive comments on idle event
          streams (default 15).
        - ``REDRELAY_SSE_RETRY_MS``: reconnection delay told to browsers (default 3000).
        - ``REDRELAY_SSE_BUFFER``: messages buffered per event stream before the oldest
          are dropped and a gap is reported (default 100).

        An unknown ``REDRELAY_`` key is an error (a typo would otherwise be ignored).

        :raises ConfigurationError: a bad or unknown setting, or the app already has
            a RedRelay.
        """
        if "redrelay" in app.extensions:
            raise ConfigurationError(
                f"app {app.name!r} already has a RedRelay; call init_app once per app"
            )
        settings = {
            k: v
            for k, v in app.config.get_namespace("REDRELAY_").items()
            if v is not None
        }
        _check_keys(settings)
        app_settings = {k: settings.pop(k) for k in APP_SETTINGS if k in settings}
        derived: dict[str, Any] = {}
        if self._relay is None:
            explicit = _as_bool("EMBEDDED", app_settings.pop("embedded", False))
            derived["embedded"] = explicit or app.debug or app.testing
            if "data_dir" not in settings and "data_dir" not in self._relay_options:
                # The app's folder, not the current directory (flask run, the worker).
                derived["data_dir"] = default_data_dir(app.instance_path)
        relay = self._relay_for_settings(app, settings, derived)
        state = RedRelayState(ext=self, relay=relay)
        _apply_app_settings(state, app_settings)
        app.extensions["redrelay"] = state
        app.cli.add_command(relay_command)
        if state.start_in_process:
            app.before_request(_start_in_process)

    def _relay_for_settings(
        self, app: Flask, settings: dict[str, Any], derived: dict[str, Any]
    ) -> Relay:
        if self._relay is not None:
            relay = self._relay
            clash = [
                f"REDRELAY_{k.upper()}"
                for k, v in settings.items()
                if not (k in ("url", "namespace") and v == getattr(relay, k))
            ]
            if clash:
                raise ConfigurationError(
                    f"{', '.join(clash)} set in app.config, but RedRelay(relay=...) was given: "
                    "configure the Relay you pass, or drop relay= to build one from the settings"
                )
            if self._shared_app is None:
                relay.add_handler_context(self._shared_app_context)
            self._shared_app = weakref.ref(app)
            return relay
        options = {**derived, **self._relay_options, **settings}
        try:
            relay = Relay(**options)
        except ConfigurationError as exc:
            # Name the setting the user wrote (REDRELAY_LEASE), not Relay's lease=.
            raise ConfigurationError(_as_settings(str(exc), settings)) from None
        relay.add_handler_context(lambda message: app.app_context())
        for register in self._registrations:
            register(relay)
        self._relays.add(relay)
        return relay

    def _shared_app_context(self, message: Any) -> Any:
        app = self._shared_app() if self._shared_app is not None else None
        if app is None:
            raise ConfigurationError(
                "RedRelay(relay=...) has no app: call init_app(app) before running handlers"
            )
        return app.app_context()

    # -- registration (no Redis I/O) ------------------------------------------------------

    def consumer(self, queue: str, **options: Any) -> Callable[[H], H]:
        """Register the decorated function as the consumer of ``queue`` on every app's relay.

        Same options as :meth:`Relay.consumer` (``concurrency``, ``retries``,
        ``lease`` ...); the app's ``REDRELAY_*`` consumer settings are the defaults.
        The handler runs inside the app context, so ``current_app`` and extensions
        that need it (Flask-SQLAlchemy sessions ...) work.

        Example::

            @broker.consumer("thumbnails", concurrency=4)
            def make_thumbnail(message):
                ...
        """
        validate_name("queue", queue)

        def decorate(handler: H) -> H:
            def register(relay: Relay) -> None:
                relay.consumer(queue, **options)(handler)

            self._register(register)
            return handler

        return decorate

    def subscriber(
        self, channel: str, *, pattern: bool = False, **options: Any
    ) -> Callable[[H], H]:
        """Register the decorated function as a subscriber of ``channel`` on every app's relay.

        See :meth:`Relay.subscriber` (``concurrency=`` for ``async def`` handlers;
        ``group=`` and its options make it a durable topic subscription); the handler
        runs inside the app context.
        """
        validate_name(
            "channel pattern" if pattern else "channel", channel, pattern=pattern
        )

        def decorate(handler: H) -> H:
            def register(relay: Relay) -> None:
                relay.subscriber(channel, pattern=pattern, **options)(handler)

            self._register(register)
            return handler

        return decorate

    def periodic(self, cron: str | None = None, **options: Any) -> Callable[[H], H]:
        """Run the decorated function periodically, on every app's relay: see
        :meth:`Relay.periodic` (docs/periodic.md); ``flask relay worker`` fires it."""

        def decorate(handler: H) -> H:
            def register(relay: Relay) -> None:
                relay.periodic(cron, **options)(handler)

            self._register(register)
            return handler

        return decorate

    def schedule(self, name: str, cron: str | None = None, **options: Any) -> None:
        """Declare a periodic job on every app's relay: see :meth:`Relay.schedule`."""

        def register(relay: Relay) -> None:
            relay.schedule(name, cron, **options)

        self._register(register)

    def _register(self, register: Callable[[Relay], None]) -> None:
        for relay in list(self._relays):
            register(relay)
        self._registrations.append(register)

    # -- accessors ------------------------------------------------------------------------

    def state(self, app: Flask | None = None) -> RedRelayState:
        """The :class:`RedRelayState` of ``app`` (default: the current app).

        :raises RuntimeError: outside an app context, or the app was not initialised.
        """
        if app is None:
            if not current_app:
                raise RuntimeError(
                    "Working outside of application context: use `with app.app_context():`, "
                    "or broker.relay_for(app)"
                )
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get("redrelay")
        if not isinstance(state, RedRelayState) or state.ext is not self:
            raise RuntimeError(
                f"the Flask app {app.name!r} is not registered with this RedRelay; "
                "did you forget to call init_app(app)?"
            )
        return state

    def relay_for(self, app: Flask) -> Relay:
        """The relay of ``app`` (for a worker entry point, outside any app context)."""
        return self.state(app).relay

    @property
    def relay(self) -> Relay:
        """The relay of the current app."""
        return self.state().relay

    @property
    def hub(self) -> EventHub:
        """The server-sent-events hub of the current app's relay."""
        return hub_for(self.state().relay)

    def queue(self, name: str) -> Queue:
        """``relay.queue(name)`` of the current app: ``broker.queue("emails").put(...)``."""
        return self.relay.queue(name)

    def publish(
        self, channel: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> int:
        """``relay.publish(...)`` of the current app; returns how many subscribers got it."""
        return self.relay.publish(channel, body, headers=headers)

    async def apublish(
        self, channel: str, body: Any, *, headers: dict[str, str] | None = None
    ) -> int:
        """:meth:`publish` as a coroutine, for ``async def`` views and handlers."""
        return await self.relay.apublish(channel, body, headers=headers)

    def sse_blueprint(
        self,
        *,
        url_prefix: str = "/events",
        authorize: Callable[[str], bool] | None = None,
        name: str = "redrelay_sse",
    ) -> Blueprint:
        """A blueprint serving ``GET <url_prefix>/<channel>`` as server-sent events.

        See :func:`create_sse_blueprint`.
        """
        return create_sse_blueprint(
            self, url_prefix=url_prefix, authorize=authorize, name=name
        )


# -- settings -----------------------------------------------------------------------------


def _check_keys(settings: dict[str, Any]) -> None:
    known = (*RELAY_SETTINGS, *APP_SETTINGS)
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean REDRELAY_{close[0].upper()}?" if close else ""
            raise ConfigurationError(
                f"unknown setting REDRELAY_{key.upper()} in app.config{hint} "
                f"(known: {', '.join('REDRELAY_' + k.upper() for k in known)})"
            )


def _as_settings(text: str, settings: dict[str, Any]) -> str:
    """``lease= must be ...`` -> ``REDRELAY_LEASE must be ...`` for keys set in app.config."""
    for key in settings:
        text = re.sub(rf"\b{key}=", f"REDRELAY_{key.upper()}", text)
    if "url" in settings and "REDRELAY_URL" not in text and "URL" in text:
        text += " (app.config['REDRELAY_URL'])"
    return text


def _apply_app_settings(state: RedRelayState, settings: dict[str, Any]) -> None:
    if "start_in_process" in settings:
        state.start_in_process = _as_bool(
            "START_IN_PROCESS", settings["start_in_process"]
        )
    if "sse_keepalive" in settings:
        value = settings["sse_keepalive"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(
                f"REDRELAY_SSE_KEEPALIVE must be a number of seconds > 0, got {value!r}"
            )
        state.sse_keepalive = float(value)
    for key in ("sse_retry_ms", "sse_buffer"):
        if key in settings:
            value = settings[key]
            low = 0 if key == "sse_retry_ms" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(
                    f"REDRELAY_{key.upper()} must be an int >= {low}, got {value!r}"
                )
            setattr(state, key, value)


def _as_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"REDRELAY_{key} must be true or false, got {value!r}")


# -- running in the web process -----------------------------------------------------------


def _start_in_process() -> None:
    """``before_request``: start the app's consumers and subscribers once per process,
    and wait until they are subscribed, so this first request's publish reaches them
    (see :mod:`redrelay.contrib._inprocess`)."""
    state = current_app.extensions["redrelay"]
    # Once per process (a dict lookup after that), again in a forked child.
    start_in_process(state.relay, setting="REDRELAY_START_IN_PROCESS")
    state.started = True
