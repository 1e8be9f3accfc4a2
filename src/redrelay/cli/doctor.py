"""``redrelay doctor``: what the server is, and which settings can lose messages."""

from __future__ import annotations

import time
from typing import Any

import click

from ..errors import BrokerError, ConfigurationError
from ..io.sync import Connection, redact
from ..relay import Relay
from ..worker.supervisor import server_warnings
from ._base import cli, connection_options, open_relay, queue_names

__all__ = ["doctor"]

#: Oldest Redis that redrelay runs on (workers wait with BLMOVE).
MIN_VERSION = (6, 2)


@cli.command()
@click.option("--strict", is_flag=True, help="Exit 1 if there is any warning.")
@connection_options()
@click.pass_context
def doctor(ctx: click.Context, strict: bool) -> None:
    """Check the server for settings that can lose messages.

    Prints the version, mode (standalone or cluster), memory, maxmemory-policy
    and persistence, then one warning line per setting that can lose messages,
    and per queue whose messages wait with no consumer (a stopped worker, a typo).

    \b
    Exit status:
      0  the server answered (warnings or not, unless --strict)
      1  --strict and there were warnings
      2  the server could not be reached, or bad input
    """
    relay = open_relay(ctx)
    conn = relay.connection
    conn.call("PING")  # connects; the timed PING below is then one round trip
    started = time.perf_counter()
    conn.call("PING")
    rtt_ms = (time.perf_counter() - started) * 1000
    server: dict[str, Any] = conn.call("INFO", "server")
    memory: dict[str, Any] = conn.call("INFO", "memory")
    persistence: dict[str, Any] = conn.call("INFO", "persistence")
    version = str(server.get("redis_version", "unknown"))
    rows = [
        ["server", redact(conn.url)],
        ["version", f"Redis {version}"],
        ["mode", _mode(conn, server)],
        ["round trip", f"{rtt_ms:.2f} ms"],
        ["memory", _memory(memory)],
        ["maxmemory-policy", str(memory.get("maxmemory_policy", "unknown"))],
        ["persistence", _persistence(conn, persistence)],
        ["namespace", _namespace(relay)],
    ]
    for name, value in rows:
        click.echo(f"{name:<18}{value}")
    warnings = (
        server_warnings(conn) + _version_warnings(version) + _queue_warnings(relay)
    )
    click.echo("")
    for line in warnings:
        click.echo(f"warning: {line}")
    if not warnings:
        click.echo("ok: no setting found that can lose messages")
    ctx.exit(1 if strict and warnings else 0)


def _mode(conn: Connection, server: dict[str, Any]) -> str:
    """``standalone``, or ``cluster`` with its primaries and state (the settings below are
    the ones of one node: check each node the same way)."""
    mode = str(server.get("redis_mode", "unknown"))
    if not conn.is_cluster:
        return (
            mode
            if mode != "cluster"
            else "cluster (but the URL is not redis+cluster://)"
        )
    info = conn.call("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return (
        f"cluster: {fields.get('cluster_size', '?')} primaries, "
        f"cluster_state {fields.get('cluster_state', '?').strip()} "
        "(settings below: one node's)"
    )


def _memory(info: dict[str, Any]) -> str:
    used = info.get("used_memory_human", "?")
    limit = int(info.get("maxmemory", 0) or 0)
    cap = info.get("maxmemory_human", f"{limit} bytes") if limit else "no limit"
    return f"{used} used, maxmemory {cap}"


def _persistence(conn: Connection, info: dict[str, Any]) -> str:
    parts = []
    if str(info.get("aof_enabled", "0")) == "1":
        fsync = _config(conn, "appendfsync")
        parts.append(f"AOF (appendfsync {fsync})" if fsync else "AOF")
    save = _config(conn, "save")
    if save:
        parts.append(f"RDB snapshots (save {save})")
    elif save is None:
        parts.append("RDB snapshots: unknown (CONFIG GET refused)")
    return ", ".join(parts) or "none"


def _config(conn: Connection, name: str) -> str | None:
    try:
        return (conn.config_get(name) or "").strip()
    except BrokerError:
        return None


def _namespace(relay: Relay) -> str:
    try:
        names = queue_names(relay)
    except ConfigurationError:  # a cluster node behind a plain URL: warned about below
        return f"{relay.namespace!r}: unknown (the queue set is on another node)"
    return f"{relay.namespace!r}: {len(names)} queues"


def _queue_warnings(relay: Relay) -> list[str]:
    """Queues of the namespace whose messages wait with no consumer (see ``stats``)."""
    from .stats import unconsumed_warnings

    try:
        return unconsumed_warnings(relay.stats(queue_names(relay)))
    except ConfigurationError:  # a cluster node behind a plain URL: warned about above
        return []


def _version_warnings(version: str) -> list[str]:
    try:
        numbers = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return [
            f"cannot read the Redis version ({version!r}); redrelay needs 6.2 or later"
        ]
    if numbers < MIN_VERSION:
        return [f"Redis {version} is too old: redrelay needs 6.2 or later (BLMOVE)"]
    return []
