"""``manage.py relay_outbox``: send the outbox table's rows once, or list them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from redrelay.cli import table
from redrelay.errors import RedrelayError

from ...outbox import OUTBOX_MAX_ATTEMPTS, flush_outbox
from ._common import command_error

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Send every waiting outbox row now (what relay_worker does continuously), and "
        "say how many are left. --list shows the rows instead; --retry first resets the "
        f"rows that failed {OUTBOX_MAX_ATTEMPTS} times (e.g. over a size limit since "
        "lowered), so they are tried again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--list",
            dest="show",
            action="store_true",
            help="List the rows; send nothing.",
        )
        parser.add_argument(
            "--retry", action="store_true", help="Try failed rows again."
        )
        parser.add_argument(
            "--relay",
            dest="aliases",
            action="append",
            metavar="ALIAS",
            help="Only rows of this REDRELAY alias (repeatable; default: all).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="The database (default 'default').",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ...models import OutboxMessage

        rows = OutboxMessage.objects.using(options["database"])
        if options["aliases"]:
            rows = rows.filter(alias__in=options["aliases"])
        if options["show"]:
            self._list(rows)
            return
        if options["retry"]:
            rows.filter(attempts__gte=OUTBOX_MAX_ATTEMPTS).update(attempts=0)
        try:
            sent = flush_outbox(aliases=options["aliases"], using=options["database"])
        except RedrelayError as exc:
            raise CommandError(
                f"{command_error(exc)}; {rows.count()} outbox rows wait for the next run"
            ) from exc
        failed = rows.filter(attempts__gte=OUTBOX_MAX_ATTEMPTS).count()
        left = rows.count()
        line = f"sent {sent} outbox rows; {left} left"
        if failed:
            line += f" ({failed} failed {OUTBOX_MAX_ATTEMPTS} times: see --list, then --retry)"
        self.stdout.write(line)

    def _list(self, rows: Any) -> None:
        if not rows.exists():
            self.stdout.write("the outbox is empty")
            return
        self.stdout.write(
            table(
                ["id", "alias", "kind", "name", "created", "attempts", "last error"],
                [
                    [
                        r.pk,
                        r.alias,
                        r.kind,
                        r.name,
                        r.created.strftime("%Y-%m-%d %H:%M:%S"),
                        r.attempts,
                        r.last_error.splitlines()[0][:80] if r.last_error else "-",
                    ]
                    for r in rows.order_by("pk")[:100]
                ],
            )
        )
