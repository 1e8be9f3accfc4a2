"""``redrelay dashboard``: the web dashboard, standalone."""

from __future__ import annotations

import os
import secrets

import click

from ._base import cli, connection_options, open_relay

__all__ = ["dashboard"]


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free port).",
)
@click.option(
    "--token",
    envvar="REDRELAY_DASHBOARD_TOKEN",
    help="Secret for full access (also $REDRELAY_DASHBOARD_TOKEN). Required off loopback; generated and printed if not given.",
)
@click.option(
    "--read-token",
    envvar="REDRELAY_DASHBOARD_READ_TOKEN",
    help="Secret for read-only access (also $REDRELAY_DASHBOARD_READ_TOKEN).",
)
@connection_options()
@click.pass_context
def dashboard(
    ctx: click.Context, host: str, port: int, token: str | None, read_token: str | None
) -> None:
    """Serve the web dashboard (and /metrics) until interrupted.

    Bound to a loopback address (the default) it lets local browsers in without a
    token; bound to any other address it requires --token (one is generated and
    printed when none is given).
    """
    from ..dashboard import Dashboard
    from ..dashboard.http import is_loopback, open_url
    from ..dashboard.wsgi import serve

    local = is_loopback(host)
    if not local and not token:
        token = secrets.token_urlsafe(24)
    relay = open_relay(ctx)
    board = Dashboard(relay, token=token, read_token=read_token, anonymous=local)
    try:
        server = serve(board, host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (use --port)"
        ) from exc
    url = open_url(host, server.server_port)
    click.echo(
        f"redrelay dashboard on {url} (namespace {relay.namespace!r}; Ctrl-C to stop)"
    )
    if not local:
        click.echo(
            f"open {url}?token={token}"
            if "REDRELAY_DASHBOARD_TOKEN" not in os.environ
            else "token: from $REDRELAY_DASHBOARD_TOKEN"
        )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
        server.server_close()
