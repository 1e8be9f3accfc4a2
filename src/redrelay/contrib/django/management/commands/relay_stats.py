"""``manage.py relay_stats``: depths, consumers, age and counters of each queue."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from redrelay.cli.stats import render, watch
from redrelay.errors import RedrelayError

from ._common import (
    add_relay_argument,
    command_error,
    open_relay,
    queue_names,
    require_queue,
)

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Show the depths and counters of the relay's queues (all, or QUEUES): ready, "
        "delayed, in flight, dead, consumers, age of the oldest message, and the "
        "lifetime counters acked, retried, dead, recovered, rejected. Same output as "
        "`redrelay stats`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", metavar="QUEUE")
        parser.add_argument(
            "--json", action="store_true", help="Print JSON instead of tables."
        )
        parser.add_argument(
            "-w",
            "--watch",
            type=float,
            metavar="SECONDS",
            help="Print again every SECONDS, with rates, until Ctrl-C.",
        )
        add_relay_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        relay = open_relay(options["relay"])
        try:
            names = [require_queue(relay, q).name for q in options["queues"]]
            if options["watch"] is not None:
                self._watch(
                    relay.stats, names, max(0.1, options["watch"]), options["json"]
                )
                return
            snapshots = relay.stats(names or queue_names(relay))
        except RedrelayError as exc:
            raise command_error(exc) from exc
        if options["json"]:
            payload = [dataclasses.asdict(s) for s in snapshots]
            self.stdout.write(
                orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
            )
        elif not snapshots:
            self.stdout.write(
                f"no queues in namespace {relay.namespace!r} yet (a queue appears once "
                "something is put on it or a worker consumes it)"
            )
        else:
            self.stdout.write(render(snapshots))

    def _watch(
        self, stats: Any, names: list[str], interval: float, as_json: bool
    ) -> None:
        try:
            for line in watch(lambda: stats(names or None), interval, as_json):
                self.stdout.write(line)
        except KeyboardInterrupt:
            return
