"""Every Redis key and channel name redrelay uses.

All keys of one queue share the hash tag ``{<queue>}`` (``<namespace>:{<queue>}:ready``)
so that every Lua script touches one Cluster slot; a sharded queue has one tag per shard
(``{<queue>#<n>}``) and a topic one tag (``{<topic>}``). The namespace comes first, outside
the tag, so ACL rules (``~<namespace>:*``) cover every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidName

__all__ = [
    "MAX_NAME_LENGTH",
    "QueueKeys",
    "TopicKeys",
    "channel_key",
    "epoch_key",
    "gaps_key",
    "queues_key",
    "topics_key",
    "validate_name",
]

#: Longest queue, channel or namespace name accepted.
MAX_NAME_LENGTH = 200

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*\Z")
_PATTERN = re.compile(r"[A-Za-z0-9_.:\-*?\[\]^]+\Z")


def validate_name(kind: str, name: object, *, pattern: bool = False) -> str:
    """Return ``name`` if it is a valid queue/channel/namespace name, else raise InvalidName.

    Names are ASCII letters, digits and ``_ . : -`` (starting with a letter or digit), so no
    name can contain a hash-tag brace or a glob character and reach keys outside its queue.
    Channel *patterns* may also use the glob characters ``* ? [ ] ^``.
    """
    if not isinstance(name, str):
        raise InvalidName(kind, name, f"must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidName(kind, name, "must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            kind, name, f"is {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    rule = _PATTERN if pattern else _NAME
    if not rule.match(name):
        allowed = "letters, digits, '_', '.', ':', '-'" + (
            " and glob characters" if pattern else ""
        )
        raise InvalidName(
            kind, name, f"use only ASCII {allowed}, starting with a letter or digit"
        )
    return name


def queues_key(namespace: str) -> str:
    """The set of queue names seen by producers and workers (for ``stats``)."""
    return f"{namespace}:queues"


def topics_key(namespace: str) -> str:
    """The set of topic names seen by publishers and workers (for ``stats``).

    Registered with its own command, never from a script: on a Cluster it lives in
    another slot than the topic's keys.
    """
    return f"{namespace}:topics"


def epoch_key(namespace: str) -> str:
    """A random value set once per data set: if it vanishes or changes, Redis lost its data."""
    return f"{namespace}:epoch"


def gaps_key(namespace: str) -> str:
    """Hash of channel gap counters (``gaps:<channel>``, ``lost:<channel>``) recorded by
    instrumented processes (metrics.instrument); ``<key>:log`` is a capped stream of the
    last reports."""
    return f"{namespace}:gaps"


def channel_key(namespace: str, channel: str) -> str:
    """The Redis pub/sub channel of a redrelay channel: ``<namespace>:<channel>``."""
    return f"{namespace}:{channel}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue; build with ``QueueKeys.of(namespace, name)``."""

    prefix: str
    #: list of entries; producers LPUSH, consumers take from the right (FIFO).
    ready: str
    #: sorted set: message id -> due time (server ms).
    delayed: str
    #: hash: message id -> entry, for the delayed set.
    delayed_data: str
    #: sorted set: consumer id -> lease expiry (server ms).
    leases: str
    #: hash: consumer id -> JSON info (host, pid, started).
    consumers: str
    #: sorted set: message id -> time it died (server ms).
    dead: str
    #: hash: message id -> dead record (JSON).
    dead_data: str
    #: hash of counters (acked, retried, dead, recovered, rejected ...).
    stats: str
    #: hash: per-minute and per-hour outcome counters, a bounded ring (scripts/_count.lua).
    history: str
    #: string: the queue's shard count, set by the first producer or worker (sharding.py).
    shards: str
    #: sorted set: entries of priority != 0, scored by (priority, order); see _route.lua.
    prio: str
    #: hash: the order counters of ``prio`` (``b`` for the back, ``f`` for the front).
    prio_seq: str
    #: hash: the limits' spec and token buckets (``g``: queue-wide, ``k:<key>``: per key).
    limits: str
    #: hash: consumer id -> deliveries it held at its last fetch (concurrency limits).
    slots: str
    #: sorted set (all scores 0): ``<key>\0<order><entry>``, entries parked by their key.
    parked: str
    #: sorted set: limit key -> when its parked entries may go again (server ms).
    parked_due: str
    #: set: ids of running messages whose cancellation was asked (results.md).
    cancels: str
    #: set: ids of messages taken by a worker of a consumer that stores results.
    running: str
    #: sorted set: result bucket key -> its expiry (server ms); see :meth:`result_bucket`.
    results: str
    #: pub/sub channel (not a key): ids of finished tracked messages, space-separated.
    done: str

    @classmethod
    def of(cls, namespace: str, name: str) -> QueueKeys:
        p = f"{namespace}:{{{name}}}"
        return cls(
            prefix=p,
            ready=f"{p}:ready",
            delayed=f"{p}:delayed",
            delayed_data=f"{p}:delayed:data",
            leases=f"{p}:leases",
            consumers=f"{p}:consumers",
            dead=f"{p}:dead",
            dead_data=f"{p}:dead:data",
            stats=f"{p}:stats",
            history=f"{p}:history",
            shards=f"{p}:shards",
            prio=f"{p}:prio",
            prio_seq=f"{p}:prio:seq",
            limits=f"{p}:limits",
            slots=f"{p}:slots",
            parked=f"{p}:parked",
            parked_due=f"{p}:parked:due",
            cancels=f"{p}:cancels",
            running=f"{p}:running",
            results=f"{p}:results",
            done=f"{p}:done",
        )

    def flow_stats(self) -> list[str]:
        """stats.lua's KEYS[6..9]: priorities, parked entries and keys, limits."""
        return [self.prio, self.parked, self.parked_due, self.limits]

    @property
    def name(self) -> str:
        """The queue's name as log lines show it (a shard's: ``emails#0``), not the key."""
        return self.prefix.partition("{")[2].rstrip("}")

    def inflight(self, consumer: str) -> str:
        """Hash of one consumer's deliveries: delivery tag -> entry."""
        return f"{self.prefix}:inflight:{consumer}"

    def started(self, consumer: str) -> str:
        """Hash of one consumer's redelivered tags that were marked as started (mark.lua)."""
        return f"{self.prefix}:started:{consumer}"

    def job(self, msg_id: str) -> str:
        """Hash of one tracked message until it finishes (its outcome then goes to a result
        bucket), or of one that died or was cancelled unrun (results.md)."""
        return f"{self.prefix}:job:{msg_id}"

    def result_bucket(self, ttl_ms: int, number: int) -> str:
        """Hash of the outcomes (id -> state byte + value) of the messages that finished
        in one time bucket, with one result TTL (results.md, "Where it is stored")."""
        return f"{self.prefix}:results:{ttl_ms}:{number}"

    def dedup(self, key: str) -> str:
        """String holding the id of the message put under a deduplication key."""
        return f"{self.prefix}:dedup:{key}"


@dataclass(frozen=True, slots=True)
class TopicKeys:
    """The keys of one topic; build with ``TopicKeys.of(namespace, name)``.

    All share the topic's hash tag, so every script runs in one slot. They sit under
    ``<ns>:{<topic>}:topic`` so that a queue and a topic of the same name never collide.
    """

    prefix: str
    #: the stream; each entry has one field ``e`` (the envelope) and, for an entry
    #: requeued from one group's dead letters, ``g`` (the only group that runs it).
    stream: str

    @classmethod
    def of(cls, namespace: str, name: str) -> TopicKeys:
        p = f"{namespace}:{{{name}}}:topic"
        return cls(prefix=p, stream=p)

    def group(self, group: str) -> GroupKeys:
        """The keys of one consumer group of this topic."""
        p = f"{self.prefix}:g:{group}"
        return GroupKeys(
            group=group,
            leases=f"{p}:leases",
            consumers=f"{p}:consumers",
            retry=f"{p}:retry",
            failures=f"{p}:failures",
            dead=f"{p}:dead",
            dead_data=f"{p}:dead:data",
            stats=f"{p}:stats",
            history=f"{p}:history",
            cursor=f"{p}:cursor",
            started=f"{p}:started",
        )


@dataclass(frozen=True, slots=True)
class GroupKeys:
    """The keys of one consumer group (besides the stream and its Redis-side group)."""

    group: str
    #: sorted set: consumer id -> lease expiry (server ms).
    leases: str
    #: hash: consumer id -> JSON info (host, pid, started).
    consumers: str
    #: sorted set: stream id -> due time (server ms) of entries waiting to be delivered
    #: again (a retry's backoff, or a dead consumer's entries, due at once).
    retry: str
    #: hash: stream id -> failures so far (only for entries that failed).
    failures: str
    #: sorted set: message id -> time it died (server ms).
    dead: str
    #: hash: message id -> dead record (JSON).
    dead_data: str
    #: hash of counters (acked, retried, dead, recovered, rejected, trimmed ...).
    stats: str
    #: hash: per-minute and per-hour outcome counters, a bounded ring (scripts/_count.lua).
    history: str
    #: hash: ``id``, the last stream id this group read, and ``read``, how many entries
    #: the stream ever had up to it (to notice and count entries trimmed unread).
    cursor: str
    #: hash: stream id -> 1 for redelivered entries whose handler started (topic_mark.lua).
    started: str
