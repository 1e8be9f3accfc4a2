"""The worker's side of flow limits: record them with the queue, refuse disagreements.

The limits themselves are enforced by fetch.lua (see :mod:`redrelay.protocol.flow`); a
worker only has to make sure that every live worker of a queue passes the same ones,
since each fetch applies what its caller sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import ConsumerOptions
    from ..io.sync import Connection

__all__ = ["register_limits"]


def register_limits(
    conn: Connection, name: str, options: ConsumerOptions, lease: Any
) -> None:
    """Record a consumer's limits with its queue ``name``, before its lease joins.

    :raises ConfigurationError: live workers of the queue run it with other limits, or
        the queue is sharded (limits are kept per queue tag, so they would be per shard).
    """
    limits = options.limits
    shards = getattr(lease, "shards", None)
    if shards is not None:
        if limits:
            raise ConfigurationError(
                f"queue {name!r} has {len(shards)} shards: rate_limit=, "
                "concurrency_limit= and key_rate_limit= are not supported on sharded "
                "queues (each shard would enforce its own); use one shard, or limit "
                "inside the handler"
            )
        return
    spec = limits.spec()
    keys = lease.keys
    other = conn.run("limit_spec", [keys.limits, keys.leases], [spec, ""])
    if other is not None and other is not False:
        theirs = other.decode() if isinstance(other, bytes) else str(other)
        raise ConfigurationError(
            f"queue {name!r}: live workers run it with other flow limits "
            f"({theirs or 'none'}) than this one ({spec or 'none'}). Every worker of a "
            "queue must pass the same rate_limit=, burst=, concurrency_limit= and "
            "key_rate_limit=: stop the others first (their leases expire "
            f"{options.lease:g}s after they stop), or align the settings"
        )
