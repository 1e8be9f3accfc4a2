"""``manage.py relay_stats``: depths, consumers, age and counters of each queue, then
each topic group's lag and pending entries (the output of ``redrelay stats``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redrelay.cli.stats import EMPTY, render_snapshot, snapshot, to_json, watch
from redrelay.errors import RedrelayError
from redrelay.relay import Relay

from ._common import add_relay_argument, command_error, open_relay, require_queue

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Show the depths and counters of the relay's queues (all, or QUEUES): ready, "
        "delayed, in flight, dead, consumers, age of the oldest message, and the "
        "lifetime counters acked, retried, dead, recovered, rejected; then, when no "
        "QUEUE is named, each topic group's length, consumers, lag, pending, "
        "retrying, dead and counters. Same output as `redrelay stats`."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", metavar="QUEUE")
        parser.add_argument(
            "--json", action="store_true", help="Print JSON instead of tables."
        )
        parser.add_argument(
            "--topics",
            action="store_true",
            help='With --json: print {"queues": [...], "topics": [...]} instead of '
            "the list of queues (kept as is for existing scripts).",
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
                self._watch(relay, names, max(0.1, options["watch"]), options["json"])
                return
            snap = snapshot(relay, names)
        except RedrelayError as exc:
            raise command_error(exc) from exc
        if options["json"]:
            self.stdout.write(to_json(snap, topics=options["topics"]))
        else:
            text = render_snapshot(snap)
            self.stdout.write(text or EMPTY.format(namespace=relay.namespace))

    def _watch(
        self, relay: Relay, names: list[str], interval: float, as_json: bool
    ) -> None:
        try:
            for line in watch(lambda: snapshot(relay, names), interval, as_json):
                self.stdout.write(line)
        except KeyboardInterrupt:
            return
