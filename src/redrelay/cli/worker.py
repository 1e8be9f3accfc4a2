"""``redrelay worker``: run a relay's consumers and subscribers."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._base import cli, connection_options, load_relay

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["run_worker", "worker", "worker_options"]

F = TypeVar("F", bound=Any)


def worker_options(command: F) -> F:
    """The options of a worker command (``redrelay worker``, ``flask relay worker``)."""
    for option in reversed(_WORKER_OPTIONS):
        command = option(command)
    return command


_WORKER_OPTIONS = [
    click.option(
        "-q", "--queue", "queues", multiple=True, help="Only these queues (repeatable)."
    ),
    click.option(
        "-c",
        "--concurrency",
        type=click.IntRange(1, 1024),
        help="Handler threads per queue.",
    ),
    click.option(
        "-p", "--processes", type=click.IntRange(1, 256), default=1, show_default=True
    ),
    click.option(
        "--grace",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds running handlers get on stop.",
    ),
    click.option(
        "--no-subscribers", is_flag=True, help="Do not run channel subscribers."
    ),
    click.option(
        "--no-scheduler",
        is_flag=True,
        help="Do not fire periodic jobs from this worker (others still do).",
    ),
    click.option(
        "--parent-pid", type=int, hidden=True, help="Stop when this process is gone."
    ),
    click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=lambda ctx, param, value: _verbosity(value),
        help="More log output (-v: info, -vv: debug); also accepted before the command.",
    ),
]


def _verbosity(count: int) -> None:
    """``worker -v``: as ``redrelay -v worker`` (the group configured logging already)."""
    if not count:
        return
    level = logging.WARNING - 10 * min(count, 2)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(min(root.level or logging.WARNING, level))


@cli.command()
@click.argument("target")
@worker_options
@connection_options(namespace=False)
@click.pass_context
def worker(
    ctx: click.Context,
    target: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    processes: int,
    grace: float,
    no_subscribers: bool,
    no_scheduler: bool,
    parent_pid: int | None,
) -> None:
    """Run the consumers, subscribers and schedules of TARGET (module:relay).

    TARGET names a Relay, or a function returning one (e.g. myapp.tasks:relay).
    The first SIGTERM/SIGINT stops fetching, lets running handlers finish within
    --grace and exits 0; a second one exits at once (messages stay safe).
    """
    relay = load_relay(
        target, ctx.obj["url"], ctx.obj.get("data_dir")
    )  # a bad target fails here, once
    run_worker(
        ctx,
        lambda: relay,
        queues=queues,
        concurrency=concurrency,
        processes=processes,
        grace=grace,
        no_subscribers=no_subscribers,
        no_scheduler=no_scheduler,
        parent_pid=parent_pid,
    )


def run_worker(
    ctx: click.Context,
    load: Callable[[], Relay],
    *,
    queues: tuple[str, ...],
    concurrency: int | None,
    processes: int,
    grace: float,
    no_subscribers: bool,
    parent_pid: int | None,
    no_scheduler: bool = False,
    command: list[str] | None = None,
) -> None:
    """What a worker command does with its options (``redrelay worker``, ``flask relay
    worker``): supervise ``processes`` copies of this command line (``command``: how to
    start it, default ``python -m redrelay``), else load the relay and run it here."""
    from ..worker.supervisor import Worker, supervise, without_processes

    if processes > 1:
        # The children run this same command line, minus --processes.
        argv = [*without_processes(sys.argv[1:]), "--parent-pid", str(os.getpid())]
        ctx.exit(supervise(argv, processes, grace, command=command))
    w = Worker(
        load(),
        queues=queues or None,
        concurrency=concurrency,
        subscribers=not no_subscribers,
        scheduler=not no_scheduler,
        grace=grace,
        parent_pid=parent_pid,
    )
    ctx.exit(w.run())
