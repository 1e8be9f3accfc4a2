"""The relays of the ``REDRELAY`` aliases, and the handlers declared for them.

The relay of an alias is built on first use by :func:`get_relay` and closed when a
``setting_changed`` signal names ``REDRELAY`` or ``TASKS`` (``override_settings`` in
tests), so the next call builds a fresh one. Handlers declared with :func:`consumer` and
:func:`subscriber` (usually in an app's ``consumers.py``) are kept here, like the
admin's registry, and registered on every relay built for their alias; a handler
registered directly with ``get_relay().consumer(...)`` lasts only as long as that relay.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import import_string

from ...errors import ConfigurationError
from ...handlers import Handler
from ...message import Message
from ...protocol.keys import validate_name
from ...relay import Relay
from ._test_db import drain_shares_connections, shared_connections
from .conf import DEFAULT_ALIAS, InvalidRelaySettings, relay_settings

__all__ = [
    "build_relay",
    "consumer",
    "db_connections",
    "declared_aliases",
    "get_relay",
    "periodic",
    "reset_relays",
    "subscriber",
]

H = TypeVar("H", bound=Handler)


# -- handler declarations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Declaration:
    kind: str  # "consumer", "subscriber" or "periodic" (name: the crontab, or "")
    name: str
    handler: Handler
    alias: str
    options: dict[str, Any]

    def apply(self, relay: Relay) -> None:
        try:
            if self.kind == "consumer":
                relay.consumer(self.name, **self.options)(self.handler)
            elif self.kind == "periodic":
                relay.periodic(self.name or None, **self.options)(self.handler)
            else:
                relay.subscriber(self.name, **self.options)(self.handler)
        except (ConfigurationError, TypeError) as exc:
            # TypeError: an unknown keyword (@consumer("emails", retrys=3)).
            where = getattr(self.handler, "__module__", "?")
            raise InvalidRelaySettings(
                f"@{self.kind}({self.name!r}) on {where}."
                f"{getattr(self.handler, '__qualname__', self.handler)}: {exc}"
            ) from exc


_lock = threading.RLock()
_relays: dict[str, Relay] = {}
_declarations: list[_Declaration] = []


def declared_aliases() -> dict[str, list[str]]:
    """Every alias named by a declaration, with the handlers declared for it (for checks)."""
    with _lock:
        found: dict[str, list[str]] = {}
        for d in _declarations:
            name = getattr(d.handler, "__qualname__", repr(d.handler))
            found.setdefault(d.alias, []).append(
                f"@{d.kind}({d.name!r}) on {getattr(d.handler, '__module__', '?')}.{name}"
            )
        return found


def _declare(declaration: _Declaration) -> None:
    with _lock:
        relay = _relays.get(declaration.alias)
        if relay is not None:
            declaration.apply(relay)  # raises (and keeps nothing) if it cannot be
        _declarations.append(declaration)


def consumer(
    queue: str, *, alias: str = DEFAULT_ALIAS, **options: Any
) -> Callable[[H], H]:
    """Declare the decorated function as the consumer of ``queue`` (usually in ``consumers.py``).

    The declaration is kept and registered on the relay of ``alias`` when it is built
    (and again after a settings change); nothing touches Redis. ``options`` are those of
    :meth:`redrelay.Relay.consumer` (``concurrency``, ``retries``, ``lease`` ...) and
    override ``REDRELAY[alias]["OPTIONS"]``.

    Example::

        # myapp/consumers.py
        from redrelay.contrib.django import consumer

        @consumer("emails", retries=5)
        def send_email(message):
            send_mail(**message.body)

    :param queue: the queue's name.
    :param alias: the ``REDRELAY`` alias whose relay consumes it.
    :returns: the function itself, unchanged.
    """
    validate_name("queue", queue)

    def register(handler: H) -> H:
        if not callable(handler):
            raise ConfigurationError(f"@consumer({queue!r}) must decorate a callable")
        _declare(_Declaration("consumer", queue, handler, alias, dict(options)))
        return handler

    return register


def subscriber(
    channel: str, *, pattern: bool = False, alias: str = DEFAULT_ALIAS, **options: Any
) -> Callable[[H], H]:
    """Declare the decorated function as a subscriber of ``channel`` (a glob if ``pattern``).

    With ``group=`` (and the options of :meth:`redrelay.Relay.subscriber`) it subscribes
    to a durable topic instead; ``relay_worker`` runs it too.

    Subscribers run in ``manage.py relay_worker`` (every worker process receives every
    message published while it is connected). Like :func:`consumer`, the declaration is
    registered on the relay of ``alias`` whenever it is built.

    ``concurrency`` is that of :meth:`redrelay.Relay.subscriber` (``async def`` handlers).

    Example::

        @subscriber("notifications")
        def on_notification(message):
            log.info("received %s", message.body)
    """
    validate_name("channel pattern" if pattern else "channel", channel, pattern=pattern)

    def register(handler: H) -> H:
        if not callable(handler):
            raise ConfigurationError(
                f"@subscriber({channel!r}) must decorate a callable"
            )
        _declare(
            _Declaration(
                "subscriber", channel, handler, alias, {"pattern": pattern, **options}
            )
        )
        return handler

    return register


def periodic(
    cron: str | None = None, *, alias: str = DEFAULT_ALIAS, **options: Any
) -> Callable[[H], H]:
    """Run the decorated function periodically (usually in ``consumers.py``): the options
    of :meth:`redrelay.Relay.periodic` (``every=``, ``tz=``, ``misfire=`` ... and the
    consumer's). Every ``relay_worker`` fires it, each tick once; see docs/periodic.md.

    Example::

        @periodic("0 3 * * *", tz="Europe/Berlin")
        def nightly_cleanup(message):
            Session.objects.filter(expire_date__lt=now()).delete()
    """

    def register(handler: H) -> H:
        if not callable(handler):
            raise ConfigurationError(f"@periodic({cron!r}) must decorate a callable")
        _declare(_Declaration("periodic", cron or "", handler, alias, dict(options)))
        return handler

    return register


# -- relays --------------------------------------------------------------------------------


@contextlib.contextmanager
def db_connections(message: Message) -> Iterator[None]:
    """Handler context: drop stale database connections before and after each handler.

    What Django does around each request (``request_started``/``request_finished``), so
    a long-running worker neither reuses a connection the server closed nor keeps one
    past ``CONN_MAX_AGE``. Inside a drain called from a test's transaction, the handler
    uses the test's connections instead (:mod:`._test_db`), and nothing is closed.
    """
    with shared_connections() as shared:
        if shared:
            yield
            return
        close_old_connections()
        try:
            yield
        finally:
            close_old_connections()


def build_relay(alias: str = DEFAULT_ALIAS) -> Relay:
    """A new relay for ``REDRELAY[alias]`` with every declared handler registered.

    Not cached: :func:`get_relay` is what applications call. No I/O.

    :raises InvalidRelaySettings: the settings or a handler declaration are invalid.
    """
    config = relay_settings(alias)
    relay = Relay(config.url, namespace=config.namespace, **config.relay_kwargs())
    relay.add_handler_context(db_connections)
    relay.drain_contexts.append(drain_shares_connections)
    with _lock:
        for declaration in _declarations:
            if declaration.alias == alias:
                declaration.apply(relay)
    _register_task_consumers(relay, alias)
    return relay


def _register_task_consumers(relay: Relay, alias: str) -> None:
    """Register the consumers of every ``TASKS`` backend of ours that uses this relay."""
    tasks = getattr(settings, "TASKS", None)
    if not isinstance(tasks, dict):
        return
    for task_alias, params in tasks.items():
        path = params.get("BACKEND") if isinstance(params, dict) else None
        if not isinstance(path, str):
            continue
        try:
            backend_class = import_string(path)
        except ImportError:
            continue  # the tasks framework reports it
        # Only a subclass of ours imports our module, so this never imports the tasks
        # framework for a project that does not use the backend.
        module = sys.modules.get("redrelay.contrib.django.tasks")
        if (
            module is not None
            and isinstance(backend_class, type)
            and issubclass(backend_class, module.RedRelayBackend)
        ):
            module.register_consumers(relay, alias, task_alias, params)


def get_relay(alias: str = DEFAULT_ALIAS) -> Relay:
    """The relay of ``REDRELAY[alias]``, built on first use and shared by the process.

    Example::

        from redrelay.contrib.django import get_relay

        get_relay().queue("emails").put({"to": "ada@example.com"})
        get_relay().publish("notifications", {"text": "hi"})

    :raises InvalidRelaySettings: the settings are invalid, or there is no such alias.
    """
    relay = _relays.get(alias)
    if relay is None:
        with _lock:
            relay = _relays.get(alias)
            if relay is None:
                relay = _relays[alias] = build_relay(alias)
    return relay


def reset_relays(**kwargs: Any) -> None:
    """Close every relay built so far; the next :func:`get_relay` builds new ones.

    Connected to ``setting_changed`` (for ``REDRELAY`` and ``TASKS``) by the app config.
    """
    setting = kwargs.get("setting")
    if setting is not None and setting not in ("REDRELAY", "TASKS"):
        return
    with _lock:
        relays = list(_relays.values())
        _relays.clear()
    sse = sys.modules.get("redrelay.contrib.sse")
    for relay in relays:
        if sse is not None:
            sse.hub_for(relay).close()  # end its event streams before the relay goes
        relay.close()
