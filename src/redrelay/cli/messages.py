"""``redrelay put``, ``publish`` and ``tail``: send and watch messages by hand."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import click
import orjson

from ..handlers import Subscriber
from ..message import Message
from ._base import CliError, cli, connection_options, open_relay

__all__ = ["publish", "put", "tail"]

_body_format = click.option(
    "--json/--raw",
    "as_json",
    default=True,
    show_default=True,
    help="Parse BODY as JSON, or send it as a plain string.",
)
_headers = click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="KEY=VALUE",
    help="A message header (repeatable).",
)


def _parse_body(body: str, as_json: bool) -> Any:
    if body == "-":
        body = sys.stdin.read()
    if not as_json:
        return body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CliError(
            f"BODY is not valid JSON ({exc}); quote it, e.g. '\"hello\"', or pass --raw "
            "to send it as a string"
        ) from None


def _parse_headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--header {item!r} is not KEY=VALUE")
        headers[key] = value
    return headers


@cli.command()
@click.argument("queue")
@click.argument("body")
@_body_format
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    help="Seconds before the message becomes available.",
)
@_headers
@connection_options()
@click.pass_context
def put(
    ctx: click.Context,
    queue: str,
    body: str,
    as_json: bool,
    delay: float | None,
    headers: tuple[str, ...],
) -> None:
    """Put BODY on QUEUE and print the message id.

    BODY is JSON by default (`'{"to": "ada@example.com"}'`, `'"text"'`, `42`);
    `-` reads it from stdin.
    """
    value = _parse_body(body, as_json)
    parsed = _parse_headers(headers)
    relay = open_relay(ctx, start=True)
    msg_id = relay.queue(queue).put(value, delay=delay, headers=parsed or None)
    click.echo(msg_id)


@cli.command()
@click.argument("channel")
@click.argument("body")
@_body_format
@_headers
@connection_options()
@click.pass_context
def publish(
    ctx: click.Context, channel: str, body: str, as_json: bool, headers: tuple[str, ...]
) -> None:
    """Publish BODY on CHANNEL; print how many subscribers received it.

    Pub/sub is at-most-once: only subscribers connected now get it.
    BODY is JSON by default; `-` reads it from stdin.
    """
    value = _parse_body(body, as_json)
    parsed = _parse_headers(headers)
    relay = open_relay(ctx)
    receivers = relay.publish(channel, value, headers=parsed or None)
    click.echo(f"{receivers} subscribers received it")


@cli.command()
@click.argument("channel")
@click.option("--pattern", is_flag=True, help="CHANNEL is a glob, e.g. 'orders.*'.")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1),
    help="Exit after this many messages.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@connection_options()
@click.pass_context
def tail(
    ctx: click.Context, channel: str, pattern: bool, count: int | None, as_json: bool
) -> None:
    """Print the messages of CHANNEL as they arrive.

    Runs until Ctrl-C or SIGTERM (exit 0), or until --count messages came.

    Lost messages (pub/sub is at-most-once) are reported as warnings on stderr.
    """
    from ..listener import Listener

    relay = open_relay(ctx)
    done = threading.Event()
    seen = 0

    def show(message: Message) -> None:
        nonlocal seen
        if done.is_set():
            return
        click.echo(_format(message, as_json))
        seen += 1
        if count is not None and seen >= count:
            done.set()

    listener = Listener(
        relay, [Subscriber(channel=channel, pattern=pattern, handler=show)]
    )
    relay.connection.call("PING")  # fail now, in one line, if Redis is unreachable
    restore = _stop_on_sigterm(done)
    listener.start()
    try:
        if listener.connected.wait(10.0):
            what = "pattern" if pattern else "channel"
            click.echo(f"tailing {what} {channel!r} (Ctrl-C to stop)", err=True)
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        done.set()
        listener.stop(timeout=2.0)
        restore()


def _stop_on_sigterm(done: threading.Event) -> Any:
    """SIGTERM and SIGINT end ``tail`` by setting ``done`` (exit 0). Returns the undo.

    A handler rather than ``KeyboardInterrupt``: an interrupt raised inside
    ``Event.wait`` can leave the event's lock held, and the ``done.set()`` that follows
    would then hang the process.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    handler = lambda signum, frame: done.set()  # noqa: E731
    previous = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
    }

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _format(message: Message, as_json: bool) -> str:
    body = message.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if as_json:
        record = {
            "channel": message.channel,
            "id": message.id,
            "published_at": message.enqueued_at or None,
            "headers": message.headers,
            "body": body,
        }
        return orjson.dumps(record).decode()
    stamp = message.enqueued_at or time.time()
    clock = (
        time.strftime("%H:%M:%S", time.localtime(stamp))
        + f".{int(stamp * 1000) % 1000:03d}"
    )
    text = body if message.raw else orjson.dumps(body).decode()
    headers = f" {orjson.dumps(message.headers).decode()}" if message.headers else ""
    return f"{clock} {message.channel} {text}{headers}"
