"""What the metrics endpoint and the dashboard read from Redis: one cluster-wide view.

Everything here is read from Redis at the moment it is asked for, never kept per process,
so two scrapes of two processes agree. Each read costs O(1) or O(log n) per queue (a
read-only stats script, one HMGET of history slots, the lease set and the consumer info
of that queue), whatever the depth of the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .protocol import history
from .protocol.keys import queues_key, topics_key

if TYPE_CHECKING:
    from .queue import QueueStats
    from .relay import Relay
    from .topic import TopicStats

__all__ = [
    "MAX_CHANNELS",
    "ConsumerInfo",
    "Overview",
    "channel_subscribers",
    "consumers",
    "overview",
    "queue_history",
    "group_history",
    "queue_names",
    "topic_names",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerInfo:
    """One consumer (a lease on one queue shard) as its worker registered it."""

    id: str
    queue: str
    host: str
    pid: int
    #: Unix time the consumer registered.
    started: float
    #: Unix time its lease runs out (a heartbeat pushes it forward).
    lease_until: float
    #: Deliveries it holds now.
    in_flight: int
    #: Handlers it runs at once (0: not recorded by an older worker).
    concurrency: int = 0
    #: Unix time of its last heartbeat (None: not recorded by an older worker).
    heartbeat: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """Every queue and topic of a namespace, and the consumers of the queues."""

    queues: list[QueueStats]
    topics: list[TopicStats]
    consumers: list[ConsumerInfo] = field(default_factory=list)

    @property
    def workers(self) -> int:
        """Worker processes (distinct host and pid) holding a live lease on some queue."""
        return len({(c.host, c.pid) for c in self.consumers})


def queue_names(relay: Relay) -> list[str]:
    """Every queue the namespace has seen (producers and workers register them)."""
    members = relay.connection.call("SMEMBERS", queues_key(relay.namespace))
    return sorted(m.decode() for m in members)


def topic_names(relay: Relay) -> list[str]:
    """Every topic the namespace has seen."""
    members = relay.connection.call("SMEMBERS", topics_key(relay.namespace))
    return sorted(m.decode() for m in members)


#: Most channels listed (PUBSUB CHANNELS walks the server's active channels, not keys).
MAX_CHANNELS = 200


def channel_subscribers(relay: Relay) -> tuple[dict[str, int], int]:
    """Channels of the namespace that have subscribers now, with their subscriber
    counts, and the server's pattern subscriptions (the SSE hub subscribes to a pattern,
    which ``PUBSUB NUMSUB`` does not count).

    On a Cluster these are the node's that the connection reaches (pub/sub is
    per node before Redis 7's sharded pub/sub).
    """
    conn = relay.connection
    prefix = f"{relay.namespace}:"
    names = sorted(c.decode() for c in conn.call("PUBSUB", "CHANNELS", prefix + "*"))
    # Not a queue's own channel (``{<queue>}:done``, the results' waiters): channel
    # names cannot hold a brace.
    names = [n for n in names if "{" not in n][:MAX_CHANNELS]
    counts: dict[str, int] = {}
    if names:
        flat = conn.call("PUBSUB", "NUMSUB", *names)
        for i in range(0, len(flat), 2):
            counts[flat[i].decode().removeprefix(prefix)] = int(flat[i + 1])
    return counts, int(conn.call("PUBSUB", "NUMPAT"))


def consumers(relay: Relay, queue: str) -> list[ConsumerInfo]:
    """The consumers holding a live lease on ``queue`` (all shards), oldest first.

    Costs the lease set and the consumer hash of the queue: O(consumers), not O(depth).
    """
    conn = relay.connection
    now = conn.time_ms() / 1000
    found: list[ConsumerInfo] = []
    for k in relay.queue(queue).shard_keys():
        leases = _pairs(conn.call("ZRANGE", k.leases, 0, -1, "WITHSCORES"))
        live = [(cid, float(score) / 1000) for cid, score in leases]
        live = [(cid, until) for cid, until in live if until >= now]
        if not live:
            continue
        infos = conn.call("HMGET", k.consumers, *[cid for cid, _ in live])
        held = [conn.call("HLEN", k.inflight(cid)) for cid, _ in live]
        for (cid, until), raw, n in zip(live, infos, held, strict=True):
            info = _info(raw)
            lease = info.get("lease")
            found.append(
                ConsumerInfo(
                    id=cid,
                    queue=queue,
                    host=str(info.get("host", "?")),
                    pid=int(info.get("pid", 0)),
                    started=float(info.get("started", 0.0)),
                    lease_until=until,
                    in_flight=int(n),
                    concurrency=int(info.get("concurrency") or 0),
                    heartbeat=until - float(lease) if lease else None,
                )
            )
    found.sort(key=lambda c: c.started)
    return found


def overview(
    relay: Relay, *, queues: Sequence[str] | None = None, with_consumers: bool = True
) -> Overview:
    """Stats of the queues (all, or these), of every topic, and the live consumers."""
    names = list(queues) if queues is not None else queue_names(relay)
    stats = relay.stats(names)
    topics = [relay.topic(t).stats() for t in topic_names(relay)]
    infos: list[ConsumerInfo] = []
    if with_consumers:
        for name in names:
            infos += consumers(relay, name)
    return Overview(queues=stats, topics=topics, consumers=infos)


def queue_history(
    relay: Relay,
    queue: str,
    outcome: str = "acked",
    *,
    points: int = 60,
    unit: str = "minute",
) -> list[int]:
    """Per-minute (or per-hour) counts of ``outcome`` for the last ``points``, oldest first.

    Summed over the shards of a sharded queue; one HMGET of ``points`` fields per shard.
    """
    if outcome not in history.OUTCOMES:
        raise ValueError(
            f"outcome must be one of {', '.join(history.OUTCOMES)}; got {outcome!r}"
        )
    conn = relay.connection
    shards = relay.queue(queue).shard_keys()
    stamps = history.stamps(conn.time_ms(shards[0].history), points, unit)
    fields = history.fields(stamps, outcome, unit)
    total = [0] * len(stamps)
    for k in shards:
        counts = history.parse(stamps, conn.call("HMGET", k.history, *fields))
        total = [a + b for a, b in zip(total, counts, strict=True)]
    return total


def group_history(
    relay: Relay,
    topic: str,
    group: str,
    outcome: str = "acked",
    *,
    points: int = 60,
    unit: str = "minute",
) -> list[int]:
    """:func:`queue_history` for one consumer group of a topic."""
    if outcome not in history.OUTCOMES:
        raise ValueError(
            f"outcome must be one of {', '.join(history.OUTCOMES)}; got {outcome!r}"
        )
    conn = relay.connection
    key = relay.topic(topic).keys.group(group).history
    stamps = history.stamps(conn.time_ms(key), points, unit)
    fields = history.fields(stamps, outcome, unit)
    return history.parse(stamps, conn.call("HMGET", key, *fields))


def _pairs(reply: Any) -> list[tuple[str, Any]]:
    if reply and isinstance(reply[0], (list, tuple)):  # RESP3 WITHSCORES
        return [(m.decode(), s) for m, s in reply]
    return [(reply[i].decode(), reply[i + 1]) for i in range(0, len(reply), 2)]


def _info(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
