"""``redrelay queue purge|delete``: empty a queue, or remove it (a mistyped name ...)."""

from __future__ import annotations

import click

from ._base import cli, confirm, connection_options, open_relay, require_queue

__all__ = ["queue"]


@cli.group()
def queue() -> None:
    """Purge a queue's ready messages, or delete a queue.

    A queue appears in `stats` once something is put on it; a mistyped name
    collects messages that no consumer will ever take (`stats` and `doctor`
    warn about queues with messages and no consumers).
    """


@queue.command()
@click.argument("name")
@click.option("--delayed", is_flag=True, help="Delete the delayed messages too.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask first.")
@connection_options()
@click.pass_context
def purge(ctx: click.Context, name: str, delayed: bool, yes: bool) -> None:
    """Delete the ready messages of queue NAME (messages in flight and dead letters stay)."""
    q = require_queue(open_relay(ctx), name)
    stats = q.stats()
    what = f"{stats.ready} ready" + (f" and {stats.delayed} delayed" if delayed else "")
    confirm(
        f"Delete {what} messages of queue {name!r}? This cannot be undone.", yes=yes
    )
    done = q.purge(delayed=delayed)
    extra = f" and {done.delayed} delayed" if delayed else ""
    click.echo(f"purged {done.ready} ready{extra} messages of queue {name!r}")


@queue.command()
@click.argument("name")
@click.option(
    "--force",
    is_flag=True,
    help="Even if a worker still consumes it (it may come back).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask first.")
@connection_options()
@click.pass_context
def delete(ctx: click.Context, name: str, force: bool, yes: bool) -> None:
    """Delete queue NAME: all its messages (ready, delayed, in flight, dead), its
    counters, and its name from `stats`."""
    q = require_queue(open_relay(ctx), name)
    stats = q.stats()
    total = stats.ready + stats.delayed + stats.in_flight + stats.dead
    confirm(
        f"Delete queue {name!r} and its {total} messages? This cannot be undone.",
        yes=yes,
    )
    deleted = q.delete(force=force)
    click.echo(f"deleted queue {name!r} ({deleted} messages)")
