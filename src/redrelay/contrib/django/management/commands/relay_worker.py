"""``manage.py relay_worker``: run the project's consumers, subscribers and outbox relay."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from redrelay.errors import ConfigurationError

from ...conf import DEFAULT_ALIAS, relay_settings
from ...relays import get_relay

__all__ = ["Command"]


class Command(BaseCommand):
    help = (
        "Run the consumers and subscribers declared in the apps' consumers.py (and the "
        "tasks backend's queues) until SIGTERM/SIGINT. The first signal stops fetching, "
        "lets running handlers finish within --grace and exits 0; a second one exits at "
        "once (messages stay safe). Also sends the outbox table's rows."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-q",
            "--queue",
            dest="queues",
            action="append",
            metavar="QUEUE",
            help="Only this queue (repeatable). Default: every registered consumer.",
        )
        parser.add_argument(
            "-c",
            "--concurrency",
            type=_int_range(1, 1024),
            help="Handler threads per queue (default: each consumer's own).",
        )
        parser.add_argument(
            "-p",
            "--processes",
            type=_int_range(1, 256),
            default=1,
            help="Worker processes, restarted if they die (default 1).",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="Seconds running handlers get to finish on stop (default 30).",
        )
        parser.add_argument(
            "--no-subscribers",
            action="store_true",
            help="Do not run channel subscribers.",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_true",
            help="Do not fire periodic jobs from this worker (others still do).",
        )
        parser.add_argument(
            "--no-outbox",
            action="store_true",
            help="Do not send the outbox table's rows from this worker.",
        )
        parser.add_argument(
            "--relay",
            default=DEFAULT_ALIAS,
            help="The REDRELAY alias to run (default 'default').",
        )
        parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        from redrelay.worker.supervisor import Worker

        _configure_logging(options["verbosity"])
        alias = options["relay"]
        try:
            config = relay_settings(alias)
            relay = get_relay(alias)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if options["processes"] > 1:
            sys.exit(self._supervise(options))
        tasks = sys.modules.get("redrelay.contrib.django.tasks")  # loaded if in use
        if tasks is not None:
            tasks.consume_open_queues(relay, alias)  # TASKS with QUEUES: []
        outbox = None
        if not options["no_outbox"] and _outbox_in_use(config.outbox):
            from ...outbox import OutboxRelay

            outbox = OutboxRelay(
                [alias], poll=config.outbox_poll, batch=config.outbox_batch
            )
            outbox.start()
        worker = Worker(
            relay,
            queues=options["queues"],
            concurrency=options["concurrency"],
            subscribers=not options["no_subscribers"],
            scheduler=not options["no_scheduler"],
            grace=options["grace"],
            parent_pid=options["parent_pid"],
        )
        try:
            status = worker.run()
        except ConfigurationError as exc:
            raise CommandError(
                f"{exc} (declare handlers with @consumer/@subscriber in an installed "
                "app's consumers.py)"
            ) from exc
        finally:
            if outbox is not None:
                outbox.stop()
        if status:
            sys.exit(status)

    def _supervise(self, options: dict[str, Any]) -> int:
        from redrelay.worker import supervisor

        if not sys.argv or "relay_worker" not in sys.argv:
            raise CommandError(
                "--processes needs a command line (manage.py relay_worker ...), "
                "not call_command()"
            )
        at = sys.argv.index("relay_worker")
        # The children run this same command line, minus --processes, as
        # `python <manage.py or -m django> ... relay_worker ...`.
        prefix = [sys.executable, *_program(sys.argv[:at])]
        argv = [
            *supervisor.without_processes(sys.argv[at:]),
            "--parent-pid",
            str(os.getpid()),
        ]
        return supervisor.supervise(
            argv, options["processes"], options["grace"], command=prefix
        )


def _program(head: list[str]) -> list[str]:
    """How this process was started: ``manage.py`` or ``-m django``, plus options."""
    if head and head[0].endswith("__main__.py"):
        return ["-m", "django", *head[1:]]
    return head


def _int_range(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an int from {low} to {high}"
            )
        return value

    return parse


def _outbox_in_use(enabled: bool) -> bool:
    """Run the outbox relay if the alias enables it, or if the table exists."""
    if enabled:
        return True
    from ...models import OutboxMessage

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        tables = connection.introspection.table_names()
    except DatabaseError:
        return False
    finally:
        connection.close()  # the main thread only waits for signals from now on
    return OutboxMessage._meta.db_table in tables


#: The loggers of Django's task framework (django-tasks, then Django 6's own): their
#: "Task ... state=FAILED" lines with the traceback, in the worker's format.
TASK_LOGGERS = ("django_tasks", "django.tasks")


def _configure_logging(verbosity: int) -> None:
    """Show redrelay's log lines: INFO (ready, stopped, failures) from -v 1, the default;
    DEBUG at -v 3. The task framework's own lines alike: its failures (ERROR) by default,
    each task's start and end (INFO) from -v 2."""
    logger = logging.getLogger("redrelay")
    tasks = [logging.getLogger(name) for name in TASK_LOGGERS]
    if verbosity >= 3:
        logger.setLevel(logging.DEBUG)
    elif verbosity >= 1:  # the default: "ready"/"stopped" lines (INFO), failures
        logger.setLevel(logging.INFO)
    for task_logger in tasks:
        task_logger.setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        for each in (logger, *tasks):
            each.addHandler(handler)
