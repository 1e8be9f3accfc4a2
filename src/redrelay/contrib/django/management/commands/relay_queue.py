"""``manage.py relay_queue purge|delete QUEUE``: empty a queue, or remove it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redrelay.errors import RedrelayError
from redrelay.queue import Queue

from ._common import add_relay_argument, command_error, open_relay, require_queue

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Purge a queue's ready messages (purge, --delayed for the delayed ones too; "
        "messages in flight and dead letters stay), or delete a queue with all its "
        "messages and counters (delete; refused while a worker consumes it unless "
        "--force). Same as `redrelay queue purge|delete`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        purge = actions.add_parser("purge", help="Delete the queue's ready messages.")
        purge.add_argument(
            "--delayed", action="store_true", help="And the delayed ones."
        )
        delete = actions.add_parser("delete", help="Delete the queue entirely.")
        delete.add_argument(
            "--force", action="store_true", help="Even if a worker still consumes it."
        )
        for sub in (purge, delete):
            sub.add_argument("queue")
            sub.add_argument(
                "--noinput",
                "--no-input",
                action="store_false",
                dest="interactive",
                help="Do not ask first.",
            )
            add_relay_argument(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        relay = open_relay(options.get("relay", "default"))
        try:
            queue = require_queue(relay, options["queue"])
            if options["action"] == "purge":
                self._purge(queue, options)
            else:
                self._delete(queue, options)
        except RedrelayError as exc:
            raise command_error(exc) from exc

    def _purge(self, queue: Queue, options: dict[str, Any]) -> None:
        stats = queue.stats()
        what = f"{stats.ready} ready" + (
            f" and {stats.delayed} delayed" if options["delayed"] else ""
        )
        _confirm(options, f"Delete {what} messages of queue {queue.name!r}?")
        done = queue.purge(delayed=options["delayed"])
        extra = f" and {done.delayed} delayed" if options["delayed"] else ""
        self.stdout.write(
            f"purged {done.ready} ready{extra} messages of {queue.name!r}"
        )

    def _delete(self, queue: Queue, options: dict[str, Any]) -> None:
        _confirm(options, f"Delete queue {queue.name!r} and all its messages?")
        deleted = queue.delete(force=options["force"])
        self.stdout.write(f"deleted queue {queue.name!r} ({deleted} messages)")


def _confirm(options: dict[str, Any], question: str) -> None:
    if not options["interactive"]:
        return
    try:
        answer = input(f"{question} This cannot be undone. Type 'yes' to continue: ")
    except EOFError:  # no terminal: say how, not a traceback
        raise CommandError(
            "this asks first, and there is no terminal to answer: pass --noinput; "
            "nothing was changed"
        ) from None
    if answer.strip().lower() != "yes":
        raise CommandError("cancelled; nothing was changed")
