"""``redrelay status``, ``result`` and ``cancel``: one tracked message by id (results.md)."""

from __future__ import annotations

import sys

import click
import orjson

from ..errors import JobCancelled, JobFailed, ResultTimeout
from ._base import cli, connection_options, open_relay

__all__ = ["cancel", "result", "status"]


@cli.command()
@click.argument("queue")
@click.argument("message_id")
@connection_options()
@click.pass_context
def status(ctx: click.Context, queue: str, message_id: str) -> None:
    """Print where MESSAGE_ID of QUEUE is: queued, delayed, running, succeeded, failed,
    cancelled or unknown."""
    click.echo(open_relay(ctx).queue(queue).status(message_id).value)


@cli.command()
@click.argument("queue")
@click.argument("message_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for it to finish (0: only if it has).",
)
@connection_options()
@click.pass_context
def result(ctx: click.Context, queue: str, message_id: str, timeout: float) -> None:
    """Print the result of MESSAGE_ID of QUEUE as JSON (it is not consumed).

    Exit status 1 when the message failed (its error and traceback are printed) or was
    cancelled, 3 when it did not finish within --timeout, 2 for an unknown id.
    """
    q = open_relay(ctx).queue(queue)
    try:
        value = q.result(message_id, timeout=timeout)
    except JobFailed as exc:
        click.echo(f"failed: {exc.error_type}: {exc.error_message}", err=True)
        if exc.traceback:
            click.echo(exc.traceback.rstrip(), err=True)
        sys.exit(1)
    except JobCancelled:
        click.echo("cancelled", err=True)
        sys.exit(1)
    except ResultTimeout:
        click.echo(f"not finished within {timeout:g}s", err=True)
        sys.exit(3)
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.argument("queue")
@click.argument("message_id")
@connection_options()
@click.pass_context
def cancel(ctx: click.Context, queue: str, message_id: str) -> None:
    """Cancel MESSAGE_ID of QUEUE: a queued or delayed message never runs, a running one
    is asked to stop. Exit status 1 if it was not found (unknown, or finished)."""
    if open_relay(ctx).queue(queue, results=True).cancel(message_id):
        click.echo("cancelled")
    else:
        click.echo("not found: unknown, expired or finished", err=True)
        sys.exit(1)
