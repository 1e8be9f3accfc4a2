"""``manage.py relay_schedules [pause|resume|trigger|remove NAME]``: periodic jobs."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from redrelay.cli import CliError
from redrelay.cli.schedules import (
    EMPTY,
    render_schedules,
    schedule_action,
    schedule_dicts,
)
from redrelay.errors import RedrelayError

from ._common import add_relay_argument, command_error, open_relay

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "List the periodic jobs that workers registered (next tick, last tick, lag, "
        "missed ticks, paused), or pause, resume, trigger or remove one. Same as "
        "`redrelay schedules`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action",
            nargs="?",
            choices=["pause", "resume", "trigger", "remove"],
            help="What to do with NAME (default: list every schedule).",
        )
        parser.add_argument("name", nargs="?")
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        add_relay_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        relay = open_relay(options["relay"])
        action, name = options["action"], options["name"]
        try:
            if action is None:
                infos = relay.schedules.info()
                if options["json"]:
                    self.stdout.write(
                        orjson.dumps(
                            schedule_dicts(infos), option=orjson.OPT_INDENT_2
                        ).decode()
                    )
                elif infos:
                    self.stdout.write(render_schedules(infos))
                else:
                    self.stdout.write(EMPTY.format(namespace=relay.namespace))
                return
            if not name:
                raise CliError(f"relay_schedules {action} needs a schedule NAME")
            self.stdout.write(schedule_action(relay, action, name))
        except CliError as exc:
            from django.core.management.base import CommandError

            raise CommandError(exc.message) from exc
        except RedrelayError as exc:
            raise command_error(exc) from exc
