"""Helpers shared by the relay_* management commands."""

from __future__ import annotations

from django.core.management.base import CommandError, CommandParser

from redrelay.errors import BrokerUnavailable, ConfigurationError, RedrelayError
from redrelay.queue import Queue
from redrelay.relay import Relay

from ...conf import DEFAULT_ALIAS
from ...relays import get_relay

__all__ = [
    "add_relay_argument",
    "command_error",
    "open_relay",
    "queue_names",
    "require_queue",
]


def add_relay_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--relay",
        default=DEFAULT_ALIAS,
        help="The REDRELAY alias (default 'default').",
    )


def open_relay(alias: str, *, start: bool = False) -> Relay:
    """The relay of ``alias``, or a CommandError that says what is wrong.

    Without a URL, a read-only command (``start`` False) uses the alias's embedded
    server only if it is running: it never starts one.
    """
    try:
        relay = get_relay(alias)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc
    if relay.url is None and not start:
        from redrelay.embedded import running_url

        url = running_url(relay.data_dir) if relay.embedded else None
        if url is None:
            raise CommandError(
                f"REDRELAY[{alias!r}] has no URL and no embedded redis-server runs in "
                f"{relay.data_dir} (this command never starts one): set "
                f"REDRELAY[{alias!r}]['URL'] or $REDRELAY_URL, or start the app or "
                "relay_worker first"
            )
        relay.url = url
    return relay


def command_error(exc: RedrelayError) -> CommandError:
    """A one-line CommandError for a redrelay error (with a hint when Redis is down)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, BrokerUnavailable):
        text += " (is the server running? check REDRELAY['URL'])"
    return CommandError(text)


def queue_names(relay: Relay) -> list[str]:
    """Every queue the namespace has seen (producers and workers register them)."""
    from redrelay.cli import queue_names as names

    return names(relay)


def require_queue(relay: Relay, name: str) -> Queue:
    """The queue called ``name``, or a CommandError naming the queues that exist."""
    try:
        queue = relay.queue(name)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc
    known = queue_names(relay)
    if name not in known:
        raise CommandError(
            f"no queue {name!r} in namespace {relay.namespace!r} "
            f"(known: {', '.join(known) or 'none'})"
        )
    return queue
