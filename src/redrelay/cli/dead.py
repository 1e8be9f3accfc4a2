"""``redrelay dead list|requeue|purge``: inspect and manage a queue's dead letters."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable

import click
import orjson

from ..queue import DeadLetter, Queue
from ._base import (
    CliError,
    cli,
    confirm,
    connection_options,
    open_relay,
    require_queue,
    table,
)

__all__ = ["dead", "dead_letter_dict", "format_time", "json_default"]

#: Dead letters moved per round trip in bulk work (one progress-bar step each).
CHUNK = 500


@cli.group()
def dead() -> None:
    """List, requeue and purge dead letters.

    QUEUE is a queue's name, or <topic>/<group> for a topic group's dead letters.
    A message is dead-lettered when its handler failed more than `retries` times,
    raised Reject, crashed its worker `max_deliveries` times, or could not be
    decoded. Nothing is lost: it waits here with the reason until you act.
    """


@dead.command("list")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Show at most this many (newest first).",
)
@click.option(
    "--traceback", "tracebacks", is_flag=True, help="Also show bodies and tracebacks."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (bodies included).")
@connection_options()
@click.pass_context
def list_(
    ctx: click.Context, queue: str, limit: int, tracebacks: bool, as_json: bool
) -> None:
    """Show dead letters, newest first.

    One line each: id, time, attempt and reason; --traceback adds the body and
    the traceback of the last failure.
    """
    q = _source(ctx, queue)
    letters = q.dead_letters(limit=limit)
    if as_json:
        payload = [dead_letter_dict(d) for d in letters]
        click.echo(
            orjson.dumps(
                payload, option=orjson.OPT_INDENT_2, default=json_default
            ).decode()
        )
        return
    total = q.stats().dead
    if not letters:
        click.echo(f"no dead letters in queue {queue!r}")
        return
    rows = [[d.id, format_time(d.dead_at), d.attempt, d.reason] for d in letters]
    click.echo(table(["id", "dead at", "attempt", "reason"], rows))
    if tracebacks:
        for d in letters:
            click.echo(f"\n--- {d.id}")
            click.echo(f"body: {orjson.dumps(d.body, default=json_default).decode()}")
            click.echo(
                textwrap.indent(d.traceback or "(no traceback)\n", "  "), nl=False
            )
    if total > len(letters):
        click.echo(
            f"\n{len(letters)} of {total} dead letters shown, newest first (--limit N for more)"
        )


@dead.command()
@click.argument("queue")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Requeue every dead letter.")
@connection_options()
@click.pass_context
def requeue(ctx: click.Context, queue: str, ids: tuple[str, ...], all_: bool) -> None:
    """Put dead letters back on their queue.

    Moves the dead letters of QUEUE (IDS, or --all) to the end of the queue.

    Their attempt and failure counts start again from zero. Each moves exactly
    once, even if two people requeue at the same time.
    """
    q = _source(ctx, queue)
    _check_choice(ids, all_)
    if all_:
        moved, seen = _bulk(q, q.requeue_dead, "requeueing")
    else:
        moved, seen = q.requeue_dead(ids), len(ids)
    click.echo(f"requeued {moved} dead letters of {queue!r}{_missing(moved, seen)}")


@dead.command()
@click.argument("queue")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Delete every dead letter.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting --all.")
@connection_options()
@click.pass_context
def purge(
    ctx: click.Context, queue: str, ids: tuple[str, ...], all_: bool, yes: bool
) -> None:
    """Delete dead letters of QUEUE (IDS, or --all) for good."""
    q = _source(ctx, queue)
    _check_choice(ids, all_)
    if all_:
        total = q.stats().dead
        if total:
            confirm(
                f"Delete all {total} dead letters of {queue!r}? This cannot be undone.",
                yes=yes,
            )
        deleted, seen = _bulk(q, q.purge_dead, "purging")
    else:
        deleted, seen = q.purge_dead(ids), len(ids)
    click.echo(f"purged {deleted} dead letters of {queue!r}{_missing(deleted, seen)}")


def _source(ctx: click.Context, name: str) -> Queue:
    """The queue called ``name``, or a topic's group named ``<topic>/<group>``."""
    if "/" in name:
        from .topics import require_group

        return require_group(open_relay(ctx), name)  # type: ignore[return-value]
    return require_queue(open_relay(ctx), name)


def _check_choice(ids: tuple[str, ...], all_: bool) -> None:
    if bool(ids) == all_:
        raise CliError("give the ids of the dead letters, or --all (not both)")


def _bulk(q: Queue, action: Callable[[list[str]], int], label: str) -> tuple[int, int]:
    """Apply ``action`` to every dead letter there is now, CHUNK ids at a time.

    Bounded by the count at the start, oldest first: letters that die while this runs
    (say, requeued ones that fail again) are left for next time instead of looping.
    Returns (ids acted on, ids seen).
    """
    total = q.stats().dead
    done = seen = 0
    with click.progressbar(
        length=total,
        label=f"{label} {total} dead letters",
        file=sys.stderr,
    ) as bar:
        while seen < total:
            chunk = next(q.iter_dead_ids(min(CHUNK, total - seen)), None)
            if not chunk:
                break
            done += action(chunk)
            seen += len(chunk)
            bar.update(len(chunk))
    return done, seen


def _missing(done: int, seen: int) -> str:
    if done == seen:
        return ""
    return f" ({seen - done} were not dead letters: wrong id, or already requeued or purged)"


def format_time(ts: float) -> str:
    """A dead letter's time for people (local time), or "-"."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def dead_letter_dict(d: DeadLetter) -> dict[str, object]:
    """A dead letter as JSON-ready data (``--json``; the Django command too)."""
    return {
        "id": d.id,
        "queue": d.queue,
        "dead_at": d.dead_at,
        "attempt": d.attempt,
        "reason": d.reason,
        "traceback": d.traceback,
        "body": d.body,
    }


def json_default(value: object) -> str:
    """orjson ``default=``: raw bodies (bytes) as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot show a {type(value).__name__}")
