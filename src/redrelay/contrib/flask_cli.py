"""The ``flask relay`` command group: the worker and queue tools of an app's relay.

:meth:`RedRelay.init_app <redrelay.contrib.flask.RedRelay.init_app>` adds it to
``app.cli``, and the ``flask.commands`` entry point to every app (so an app that forgot
``init_app`` hears so, and an app that fails to load is one ``Error:`` line); the queue
tools are the ``redrelay`` commands themselves, reading the app's relay through the
click context.
"""

from __future__ import annotations

import logging
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..cli import CliError, Group, run_worker, shared_commands, worker_options

__all__ = ["relay_command"]


@click.group("relay", cls=Group)
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v: info, -vv: debug)."
)
@with_appcontext
@click.pass_context
def relay_command(ctx: click.Context, verbose: int) -> None:
    """redrelay: the worker and queue tools of this app's relay.

    The relay comes from the app's REDRELAY_* settings; `--url` and `--namespace`
    on a subcommand override them.
    """
    # As `redrelay worker`: ready/stopped lines (INFO) by default for the worker.
    base = logging.INFO if ctx.invoked_subcommand == "worker" else logging.WARNING
    logging.basicConfig(
        level=max(logging.DEBUG, base - 10 * min(verbose, 2)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .flask import RedRelayState

    state = current_app.extensions.get("redrelay")
    if not isinstance(state, RedRelayState):  # the plugin entry point, without init_app
        raise CliError(
            f"the Flask app {current_app.name!r} has no RedRelay: call "
            "broker.init_app(app) in your app factory (or create RedRelay(app))"
        )
    relay = state.relay
    # What the shared redrelay commands (stats, dead ...) read through open_relay():
    # no I/O here, so `--help` works; without a URL only `put` and `worker` may start
    # the app's embedded server, the others use it if it runs.
    ctx.obj = {
        "url": relay.url,
        "namespace": relay.namespace,
        "data_dir": relay.data_dir,
        "embedded": relay.embedded,
    }


@relay_command.command()
@worker_options
@click.pass_context
def worker(
    ctx: click.Context,
    queues: tuple[str, ...],
    concurrency: int | None,
    grace: float,
    processes: int,
    no_subscribers: bool,
    no_scheduler: bool,
    parent_pid: int | None,
) -> None:
    """Run this app's consumers, subscribers and schedules, each handler in an app context.

    The first SIGTERM/SIGINT stops fetching, lets running handlers finish within
    --grace and exits 0; a second one exits at once (messages stay safe).
    --processes N runs N such processes (`python -m flask ... relay worker`) and
    restarts the ones that die.
    """
    run_worker(
        ctx,
        lambda: current_app.extensions["redrelay"].relay,
        queues=queues,
        concurrency=concurrency,
        processes=processes,
        grace=grace,
        no_subscribers=no_subscribers,
        no_scheduler=no_scheduler,
        parent_pid=parent_pid,
        command=[sys.executable, "-m", "flask"],
    )


for _command in shared_commands():
    relay_command.add_command(_command)
