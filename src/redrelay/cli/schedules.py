"""``redrelay schedules``: list periodic jobs, pause, resume, trigger and remove them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
import orjson

from ..errors import NotFound
from ..protocol.schedule_time import iso_utc
from ..relay import Relay
from ..schedules import ScheduleInfo
from ._base import CliError, cli, connection_options, open_relay, table

__all__ = [
    "render_schedules",
    "schedule_action",
    "schedule_dicts",
    "schedules",
]

#: What ``schedules`` prints when no worker has registered a schedule yet.
EMPTY = (
    "no schedules in namespace {namespace!r} yet "
    "(a schedule appears once a worker that declares it starts)"
)


def schedule_dicts(infos: list[ScheduleInfo]) -> list[dict[str, Any]]:
    """Schedules as JSON-ready dicts (``schedules --json`` and ``stats --json --topics``)."""
    return [i.as_json() for i in infos]


def _local(ms: int | None, tz: str) -> str | None:
    if ms is None:
        return None
    try:
        zone = ZoneInfo(tz)
    except Exception:  # a zone this machine lacks: show UTC only
        return None
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def render_schedules(infos: list[ScheduleInfo]) -> str:
    """One row per schedule: timing, next tick (local and UTC), last tick, last message
    id, lag of the last enqueue, missed ticks, messages fired and triggered, paused."""
    headers = ["schedule", "queue", "cron", "tz", "next (local)", "next (UTC)"]
    headers += ["last (UTC)", "last id", "lag ms", "missed", "fired", "triggered"]
    headers += ["paused"]
    rows: list[list[object]] = []
    for i in infos:
        rows.append(
            [
                i.name,
                i.queue,
                i.timing,
                i.tz,
                _local(i.next, i.tz),
                None if i.next is None else iso_utc(i.next),
                None if i.last is None else iso_utc(i.last),
                i.last_id,
                i.lag,
                i.missed,
                i.fired,
                i.triggered,
                "yes" if i.paused else "no",
            ]
        )
    return table(headers, rows)


def schedule_action(relay: Relay, action: str, name: str, wait: float = 5.0) -> str:
    """Pause, resume, trigger or remove ``name``; the line to print (CLI, Flask, Django).

    A trigger from the CLI is a request that the next worker scheduler pass serves (the
    CLI has no handler code, codec or signing key to build the message with); this waits
    up to ``wait`` seconds for it to be served and says so.
    """
    schedules = relay.schedules
    try:
        if action == "pause":
            schedules.pause(name)
            return f"paused {name!r}: its ticks pass without a message until resumed"
        if action == "resume":
            schedules.resume(name)
            return f"resumed {name!r}: enqueued again from its next tick"
        if action == "remove":
            if not schedules.remove(name):
                raise CliError(f"no schedule {name!r} in Redis")
            return f"removed {name!r} (a worker that still declares it adds it back)"
        if action == "trigger":
            return _trigger(relay, name, wait)
    except NotFound as exc:
        raise CliError(str(exc)) from None
    raise CliError(f"unknown action {action!r}")  # pragma: no cover


def _trigger(relay: Relay, name: str, wait: float) -> str:
    msg_id = relay.schedules.trigger(name)
    if msg_id is not None:
        return f"triggered {name!r}: message {msg_id}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = {i.name: i for i in relay.schedules.info()}.get(name)
        if info is not None and info.pending_triggers == 0:
            return f"triggered {name!r}: a worker enqueued it"
        time.sleep(0.1)
    return (
        f"trigger of {name!r} requested; no worker scheduler served it within {wait:g}s "
        "(it is enqueued when one runs)"
    )


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@connection_options()
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the periodic jobs that workers registered (or act on one: see below).

    \b
    next       the next tick, in the schedule's zone and in UTC
    last       the last tick enqueued, and its message id
    lag ms     how late that enqueue was, after its tick (server clock)
    missed     ticks that got no message (every worker down, misfire policy)
    fired      messages enqueued for ticks; triggered: by `trigger`
    """
    if ctx.invoked_subcommand is not None:
        return
    relay = open_relay(ctx)
    infos = relay.schedules.info()
    if as_json:
        click.echo(orjson.dumps(schedule_dicts(infos), option=orjson.OPT_INDENT_2))
    elif infos:
        click.echo(render_schedules(infos))
    else:
        click.echo(EMPTY.format(namespace=relay.namespace))


def _action_command(action: str, help_text: str) -> None:
    @schedules.command(name=action, help=help_text)
    @click.argument("name")
    @connection_options()
    @click.pass_context
    def command(ctx: click.Context, name: str) -> None:
        click.echo(schedule_action(open_relay(ctx), action, name))


_action_command("pause", "Stop enqueueing NAME's ticks (they pass, counted).")
_action_command("resume", "Enqueue NAME's ticks again, from the next one.")
_action_command(
    "trigger",
    "Enqueue NAME's message now, without consuming a tick (a running worker does it).",
)
_action_command(
    "remove", "Delete NAME's state (a schedule no longer in code; workers report them)."
)
