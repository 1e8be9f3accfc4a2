"""``manage.py relay_dead list|requeue|purge``: inspect and manage a queue's dead letters."""

from __future__ import annotations

import textwrap
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from redrelay.cli import dead_letter_dict, format_time, json_default, table
from redrelay.errors import RedrelayError
from redrelay.queue import Queue

from ._common import add_relay_argument, command_error, open_relay, require_queue

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "List, requeue and purge dead letters. A message is dead-lettered when its "
        "handler failed more than `retries` times, raised Reject, crashed its worker "
        "`max_deliveries` times, or could not be decoded. Same as `redrelay dead`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        show = actions.add_parser("list", help="Show dead letters, newest first.")
        show.add_argument("queue")
        show.add_argument(
            "--limit", type=int, default=20, help="At most this many (20)."
        )
        show.add_argument(
            "--traceback",
            dest="tracebacks",
            action="store_true",
            help="Also show bodies and tracebacks.",
        )
        show.add_argument(
            "--json", action="store_true", help="Print JSON (bodies included)."
        )
        requeue = actions.add_parser(
            "requeue",
            help="Put dead letters (IDS, or --all) back at the end of their queue, "
            "counters reset.",
        )
        purge = actions.add_parser("purge", help="Delete dead letters (IDS, or --all).")
        for sub in (requeue, purge):
            sub.add_argument("queue")
            sub.add_argument("ids", nargs="*", metavar="ID")
            sub.add_argument("--all", dest="all_", action="store_true")
        purge.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask before deleting --all.",
        )
        for sub in (show, requeue, purge):
            add_relay_argument(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        relay = open_relay(options.get("relay", "default"))
        try:
            queue = require_queue(relay, options["queue"])
            if options["action"] == "list":
                self._list(queue, options)
            elif options["action"] == "requeue":
                self._requeue(queue, options)
            else:
                self._purge(queue, options)
        except RedrelayError as exc:
            raise command_error(exc) from exc

    def _list(self, queue: Queue, options: dict[str, Any]) -> None:
        letters = queue.dead_letters(limit=max(1, options["limit"]))
        if options["json"]:
            payload = [dead_letter_dict(d) for d in letters]
            self.stdout.write(
                orjson.dumps(
                    payload, option=orjson.OPT_INDENT_2, default=json_default
                ).decode()
            )
            return
        if not letters:
            self.stdout.write(f"no dead letters in queue {queue.name!r}")
            return
        rows = [[d.id, format_time(d.dead_at), d.attempt, d.reason] for d in letters]
        self.stdout.write(table(["id", "dead at", "attempt", "reason"], rows))
        if options["tracebacks"]:
            for d in letters:
                self.stdout.write(f"\n--- {d.id}")
                self.stdout.write(
                    f"body: {orjson.dumps(d.body, default=json_default).decode()}"
                )
                self.stdout.write(
                    textwrap.indent(d.traceback or "(no traceback)\n", "  "), ending=""
                )
        total = queue.stats().dead
        if total > len(letters):
            self.stdout.write(
                f"\n{len(letters)} of {total} dead letters shown, newest first "
                "(--limit N for more)"
            )

    def _requeue(self, queue: Queue, options: dict[str, Any]) -> None:
        ids = _choice(options)
        moved = queue.requeue_dead(ids)
        self.stdout.write(
            f"requeued {moved} dead letters of {queue.name!r}{_missing(moved, ids)}"
        )

    def _purge(self, queue: Queue, options: dict[str, Any]) -> None:
        ids = _choice(options)
        if ids is None and options["interactive"]:
            total = queue.stats().dead
            try:
                answer = input(
                    f"Delete all {total} dead letters of {queue.name!r}? This cannot be "
                    "undone. Type 'yes' to continue: "
                )
            except EOFError:  # no terminal (cron, a pipe): say how, not a traceback
                raise CommandError(
                    "purge --all asks first, and there is no terminal to answer: "
                    "pass --noinput; nothing was deleted"
                ) from None
            if answer.strip().lower() != "yes":
                raise CommandError("purge cancelled")
        deleted = queue.purge_dead(ids)
        self.stdout.write(
            f"purged {deleted} dead letters of {queue.name!r}{_missing(deleted, ids)}"
        )


def _choice(options: dict[str, Any]) -> list[str] | None:
    ids: list[str] = options["ids"]
    if bool(ids) == options["all_"]:
        raise CommandError("give the ids of the dead letters, or --all (not both)")
    return ids or None


def _missing(done: int, ids: list[str] | None) -> str:
    if ids is None or done == len(ids):
        return ""
    return (
        f" ({len(ids) - done} were not dead letters: wrong id, or already requeued "
        "or purged)"
    )
