"""``redrelay demo``: watch queues survive retries, dead letters and a killed worker."""

from __future__ import annotations

import click

from ._base import cli, connection_options

__all__ = ["demo"]


@cli.command()
@click.option(
    "-n",
    "--messages",
    type=click.IntRange(50, 1_000_000),
    default=3000,
    show_default=True,
    help="How many messages to produce.",
)
@connection_options(namespace=False)
@click.pass_context
def demo(ctx: click.Context, messages: int) -> None:
    """Run a self-checking demo on the embedded server (or --url).

    Starts two worker processes, produces MESSAGES jobs (some fail once, some
    always fail, some are delayed), publishes live progress on a channel, SIGKILLs
    a worker mid-run and starts another, then checks that every message was
    processed or dead-lettered. Exits 0 only if none was lost. Uses the namespace
    'redrelay-demo', which it clears first.
    """
    from ..demo import run

    ctx.exit(run(ctx.obj.get("url"), messages=messages, echo=click.echo))
