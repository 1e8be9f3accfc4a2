"""The ``redrelay`` command line."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from .errors import RedrelayError
from .relay import Relay

__all__ = ["CliError", "cli", "load_relay", "main"]


class CliError(click.ClickException):
    """A one-line error with exit status 2 (bad target, bad input)."""

    exit_code = 2


def load_relay(target: str, url: str | None = None) -> Relay:
    """Import ``module:attribute`` and return the Relay it names (one-line errors)."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise CliError(f"{target!r} is not module:attribute (e.g. myapp.tasks:relay)")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from None
    obj: Any = module
    for part in (attr or "relay").split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr or 'relay'!r}") from None
    if callable(obj) and not isinstance(obj, Relay):
        obj = obj()
    if not isinstance(obj, Relay):
        raise CliError(f"{target!r} is a {type(obj).__name__}, not a redrelay.Relay")
    if url is not None:
        obj.url = url
    return obj


@click.group()
@click.option("--url", envvar="REDRELAY_URL", help="Redis URL (default: $REDRELAY_URL, else the embedded server).")
@click.option("-v", "--verbose", count=True, help="More log output (-v: info, -vv: debug).")
@click.pass_context
def cli(ctx: click.Context, url: str | None, verbose: int) -> None:
    """redrelay: Redis as the message broker of Flask and Django apps."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"url": url}


@cli.command()
@click.argument("target")
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 1024), help="Handler threads per queue.")
@click.option("-p", "--processes", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--grace", type=float, default=30.0, show_default=True, help="Seconds running handlers get on stop.")
@click.option("--no-subscribers", is_flag=True, help="Do not run channel subscribers.")
@click.pass_context
def worker(
    ctx: click.Context,
    target: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    processes: int,
    grace: float,
    no_subscribers: bool,
) -> None:
    """Run the consumers and subscribers of TARGET (module:relay)."""
    from .worker.supervisor import Worker, supervise

    relay = load_relay(target, ctx.obj["url"])
    if processes > 1:
        argv = [a for a in sys.argv[1:]]
        argv = _without_processes(argv)
        ctx.exit(supervise(argv, processes, grace))
    w = Worker(relay, queues=queues or None, concurrency=concurrency, subscribers=not no_subscribers, grace=grace)
    ctx.exit(w.run())


def _without_processes(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("-p", "--processes"):
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out


def main() -> None:
    """Entry point: run the CLI; redrelay errors become one line and exit status 2."""
    try:
        cli(standalone_mode=True)
    except RedrelayError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
