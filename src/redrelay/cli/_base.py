"""The ``redrelay`` group, its shared options, error handling and output helpers."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..config import resolve_url
from ..errors import BrokerUnavailable, RedrelayError
from ..queue import Queue
from ..relay import Relay

__all__ = [
    "CliError",
    "Group",
    "cli",
    "confirm",
    "connection_options",
    "format_age",
    "load_relay",
    "main",
    "open_relay",
    "queue_names",
    "require_queue",
    "table",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable holding the default ``--namespace``.
ENV_NAMESPACE = "REDRELAY_NAMESPACE"


class CliError(click.ClickException):
    """A one-line error with exit status 2 (bad target, bad input, Redis unreachable)."""

    exit_code = 2


def load_relay(
    target: str, url: str | None = None, data_dir: str | None = None
) -> Relay:
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
            raise CliError(
                f"module {module_name!r} has no attribute {attr or 'relay'!r}"
            ) from None
    if callable(obj) and not isinstance(obj, Relay):
        obj = obj()
    if not isinstance(obj, Relay):
        raise CliError(f"{target!r} is a {type(obj).__name__}, not a redrelay.Relay")
    if url is not None:
        obj.url = resolve_url(url)  # checks the scheme now, in one line
    if data_dir is not None:
        obj.data_dir = data_dir
    return obj


class Group(click.Group):
    """A group whose redrelay errors, anywhere below, become one ``Error:`` line, exit 2.

    The root ``redrelay`` group, and the groups of framework glue (``flask relay``).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokerUnavailable as exc:
            raise CliError(
                f"{_one_line(exc)} (is the server running? set --url or REDRELAY_URL)"
            ) from None
        except RedrelayError as exc:
            raise CliError(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@click.group(cls=Group)
@click.option(
    "--url",
    envvar="REDRELAY_URL",
    help="Redis URL (default: $REDRELAY_URL, else the embedded server).",
)
@click.option(
    "--namespace",
    envvar=ENV_NAMESPACE,
    default="redrelay",
    show_default=True,
    help="Key prefix of the app's queues and channels (env: REDRELAY_NAMESPACE). "
    "Not used by `worker`, whose relay sets its own.",
)
@click.option(
    "--data-dir",
    envvar="REDRELAY_DATA_DIR",
    type=click.Path(file_okay=False),
    help="Without a URL: the embedded server's data directory (env: REDRELAY_DATA_DIR; "
    "default: the nearest .redrelay with a running server, here or above).",
)
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v: info, -vv: debug)."
)
@click.version_option(package_name="redrelay")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    namespace: str,
    data_dir: str | None,
    verbose: int,
) -> None:
    """redrelay: Redis as the message broker of Flask and Django apps.

    Every command takes --url (or $REDRELAY_URL). Without one, commands use the
    app's running embedded redis-server (the nearest .redrelay here or above, or
    --data-dir); only `worker`, `put` and `demo` start one. Errors print one line
    and exit 2.
    """
    # A worker says when it is ready and when it stopped (INFO) by default; failures
    # and dead letters are WARNING and ERROR (issue 16). Other commands stay quiet.
    base = logging.INFO if ctx.invoked_subcommand == "worker" else logging.WARNING
    level = max(logging.DEBUG, base - 10 * min(verbose, 2))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = {"url": url, "namespace": namespace, "data_dir": data_dir}


def _store(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.ensure_object(dict)[key] = value

    return callback


def connection_options(*, namespace: bool = True) -> Callable[[F], F]:
    """``--url`` (and ``--namespace``) on a subcommand too; they override the group's."""

    def decorate(f: F) -> F:
        if namespace:
            f = click.option(
                "--namespace",
                expose_value=False,
                callback=_store("namespace"),
                help="Key prefix (overrides `redrelay --namespace`).",
            )(f)
        f = click.option(
            "--url",
            expose_value=False,
            callback=_store("url"),
            help="Redis URL (overrides `redrelay --url` and $REDRELAY_URL).",
        )(f)
        return f

    return decorate


def open_relay(ctx: click.Context, *, start: bool = False) -> Relay:
    """A Relay for ``--url``/``--namespace``, closed when the command ends.

    Without a URL it uses the running embedded server of ``--data-dir`` (else the
    nearest ``.redrelay`` with a running server, here or above); only with ``start``
    (``put``) may it start one, so a read-only command never leaves a server behind.
    One retry per command: a CLI should say "unreachable" quickly, not hang.
    """
    obj = ctx.ensure_object(dict)
    url = obj.get("url")
    data_dir = obj.get("data_dir")
    if url is None and obj.get("embedded") is False:
        # An app that may not use the embedded server (Flask outside debug/testing).
        raise CliError(
            "no Redis URL: set REDRELAY_URL (app.config or the environment), or "
            "REDRELAY_EMBEDDED = True for the embedded development redis-server"
        )
    if url is None:
        url = _embedded(data_dir, start=start)
    relay = Relay(
        url,
        namespace=obj.get("namespace") or "redrelay",
        connect_retries=1,
        data_dir=data_dir,
    )
    ctx.call_on_close(relay.close)
    return relay


def _embedded(data_dir: str | None, *, start: bool) -> str | None:
    """The running embedded server's URL, or None (``start``: let the Relay start one)."""
    from ..embedded import find_data_dir, running_url

    if data_dir is not None:
        url = running_url(data_dir)
        where = f"in {data_dir}"
    else:
        found = find_data_dir()
        url = running_url(found) if found is not None else None
        where = f"in ./.redrelay or a folder above {os.getcwd()}"
    if url is None and not start:
        raise CliError(
            f"no Redis URL and no embedded redis-server running {where}: pass --url or "
            "set REDRELAY_URL, or --data-dir (REDRELAY_DATA_DIR) for the app's embedded "
            "server (it starts with the app or its worker; this command never starts one)"
        )
    return url


def confirm(text: str, *, yes: bool) -> None:
    """Ask ``text`` unless ``yes``; a no, or no answer (no terminal), changes nothing."""
    if yes:
        return
    try:
        click.confirm(text, abort=True)
    except click.Abort:
        hint = "" if sys.stdin.isatty() else " (no terminal to ask: pass -y/--yes)"
        raise CliError(f"not confirmed, nothing was changed{hint}") from None


def queue_names(relay: Relay) -> list[str]:
    """Every queue the namespace has seen (producers and workers register them)."""
    from ..protocol.keys import queues_key

    members = relay.connection.call("SMEMBERS", queues_key(relay.namespace))
    return sorted(m.decode() for m in members)


def require_queue(relay: Relay, name: str) -> Queue:
    """The queue called ``name``, or a one-line error naming the queues that exist."""
    queue = relay.queue(name)  # validates the name first
    known = queue_names(relay)
    if name not in known:
        raise CliError(
            f"no queue {name!r} in namespace {relay.namespace!r} "
            f"(known: {', '.join(known) or 'none'}; is --namespace right?)"
        )
    return queue


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, indent: str = ""
) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        bool(rows)
        and all(row[i] is None or isinstance(row[i], (int, float)) for row in rows)
        for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(w) if num else cell.ljust(w)
            for cell, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def format_age(seconds: float | None) -> str:
    """``None`` -> ``-``; else a short age: ``4.2s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def main() -> None:
    """Entry point: run the CLI; redrelay errors become one line and exit status 2."""
    try:
        cli(standalone_mode=True)
    except RedrelayError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
