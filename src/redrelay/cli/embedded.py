"""``redrelay embedded status|stop``: the development redis-server of this directory."""

from __future__ import annotations

import click
import orjson

from ._base import cli

__all__ = ["embedded"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="The server's directory (default: `redrelay --data-dir`, $REDRELAY_DATA_DIR, "
    "else the nearest .redrelay with a running server, else ./.redrelay).",
)


@cli.group()
def embedded() -> None:
    """Show or stop the embedded development redis-server.

    It is the server used when neither --url nor REDRELAY_URL is set. An app
    starts it on first use, on a Unix socket in its data directory (.redrelay
    beside the app's module, Flask's instance folder, Django's BASE_DIR) with AOF
    on, shared by the app's processes. It keeps running until stopped.
    """


@embedded.command()
@_data_dir
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, data_dir: str | None, as_json: bool) -> None:
    """Show the embedded server; exit 1 if it is not running."""
    from ..embedded import status as embedded_status

    data_dir = _data_dir_of(ctx, data_dir)
    info = embedded_status(data_dir)
    if as_json:
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
    elif info is None:
        click.echo(f"embedded redis-server: not running (data dir {_shown(data_dir)})")
    else:
        click.echo("embedded redis-server: running")
        rows = [
            ("pid", info.get("pid")),
            ("url", info.get("url")),
            ("version", info.get("version")),
            ("binary", info.get("binary")),
            ("data dir", info.get("data_dir")),
            ("memory", info.get("used_memory_human")),
            ("keys", info.get("keys")),
            ("aof", "on" if info.get("aof") else "off"),
        ]
        for name, value in rows:
            click.echo(f"  {name:<10}{value}")
    ctx.exit(0 if info is not None else 1)


@embedded.command()
@_data_dir
@click.pass_context
def stop(ctx: click.Context, data_dir: str | None) -> None:
    """Stop the embedded server (its data stays in the AOF for next time)."""
    from ..embedded import stop as embedded_stop

    data_dir = _data_dir_of(ctx, data_dir)
    if embedded_stop(data_dir):
        click.echo(f"embedded redis-server stopped (data dir {_shown(data_dir)})")
    else:
        click.echo(f"embedded redis-server: not running (data dir {_shown(data_dir)})")


def _data_dir_of(ctx: click.Context, data_dir: str | None) -> str | None:
    """This command's --data-dir, else the group's (or $REDRELAY_DATA_DIR), else the
    nearest .redrelay with a running server, else None (./.redrelay)."""
    from ..embedded import find_data_dir

    data_dir = data_dir or (ctx.obj or {}).get("data_dir")
    if data_dir is None:
        found = find_data_dir()
        data_dir = str(found) if found is not None else None
    return data_dir


def _shown(data_dir: str | None) -> str:
    if data_dir is not None:
        return data_dir
    import os

    return os.environ.get("REDRELAY_DATA_DIR") or "./.redrelay"
