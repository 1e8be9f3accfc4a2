"""Flow control, decided once for both layers: priorities, rate and concurrency limits.

Priorities and limit keys travel in the entry's plain-text header, between the counters
and the kind byte, so that the Lua scripts can route an entry without knowing its codec::

    \\x1frr1:<deliveries>:<failures>:[!<priority>:][@<limit key>:]<kind><payload>

A priority-0 entry without a key has neither segment: it is the plain list's fast path,
byte for byte what it was before. Retries rewrite only the counters, and recovery keeps
everything after the first counter, so a message keeps its priority and key for life.

The limits themselves are checked inside ``fetch.lua`` with the Redis server's clock (see
docs/flow-control.md); this module only parses and checks what users pass.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from .keys import QueueKeys
from .requests import Plan, Step
from .results import track_commands

__all__ = [
    "FLOW_OPTIONS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PRIO_ZERO_SCORE",
    "Limits",
    "RateLimit",
    "check_priority",
    "limit_key_of",
    "mark_entry",
    "mark_for",
    "put_prio_plan",
    "read_marks",
]

#: The consumer options of flow limits (queues only).
FLOW_OPTIONS = frozenset(
    (
        "rate_limit",
        "burst",
        "concurrency_limit",
        "limit_key",
        "key_rate_limit",
        "key_burst",
    )
)
#: Highest priority (runs first); Django's ``django.tasks`` range.
MAX_PRIORITY = 100
#: Lowest priority (runs after every priority-0 message).
MIN_PRIORITY = -100
#: In the priority set, scores below this are priorities > 0 (see _route.lua).
PRIO_ZERO_SCORE = 100 * 2**44

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([smh])\s*\Z")
_KEY_OK = re.compile(r"[A-Za-z0-9_.\-/+=@]{1,64}\Z")
#: Where the segments go in a fresh entry: right after ``MAGIC0:0:``.
_FRESH_HEADER = len(b"\x1frr1:0:0:")


def check_priority(priority: object, name: str = "priority") -> int:
    """Return ``priority`` if it is an int from -100 to 100, else raise, naming the argument."""
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"{name}= must be an int from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs sooner, 0 is the default), got {priority!r}"
        )
    return priority


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` hand-outs per ``per`` seconds, with ``burst`` tokens of headroom."""

    count: float
    per: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.per

    @classmethod
    def parse(
        cls, spec: object, burst: object = None, name: str = "rate_limit"
    ) -> RateLimit:
        """Parse ``"100/s"``, ``"30/m"``, ``"1000/h"`` or ``"5/10s"``.

        The default burst is a fifth of one second's worth (at least 1): a bucket that
        was idle lets that many through at once, and never more than ``rate + burst`` in
        any one-second window.
        """
        match = _RATE.match(spec) if isinstance(spec, str) else None
        if match is None or float(match[1]) <= 0 or (match[2] and float(match[2]) <= 0):
            raise ConfigurationError(
                f"{name}= must look like '100/s', '30/m', '1000/h' or '5/10s' "
                f"(a positive count per second, minute or hour), got {spec!r}"
            )
        count = float(match[1])
        per = float(match[2] or 1) * _UNITS[match[3]]
        if burst is None:
            burst = max(1, math.floor(count / per / 5))
        elif not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise ConfigurationError(
                f"{name.replace('rate_limit', 'burst')}= must be an int >= 1 "
                f"(messages let through at once after an idle spell), got {burst!r}"
            )
        return cls(count, per, burst)

    def spec(self) -> str:
        return f"{self.count:g}/{self.per:g}s+{self.burst}"


#: ``limit_key=``: a header name, or a function of (body, headers) returning a key or None.
LimitKey = str | Callable[[Any, Mapping[str, str]], "str | None"]


@dataclass(frozen=True, slots=True)
class Limits:
    """A consumer's flow limits, as fetch.lua receives them."""

    rate: RateLimit | None = None
    concurrency: int | None = None
    key_rate: RateLimit | None = None

    def __bool__(self) -> bool:
        return bool(self.rate or self.concurrency or self.key_rate)

    def spec(self) -> str:
        """One string stored with the queue, so that workers that disagree are refused."""
        if not self:
            return ""
        parts = [
            f"rate={self.rate.spec() if self.rate else '-'}",
            f"concurrency={self.concurrency or '-'}",
            f"key_rate={self.key_rate.spec() if self.key_rate else '-'}",
        ]
        return " ".join(parts)

    def args(self) -> list[str]:
        """fetch.lua's ARGV[5..9]: tokens per ms, burst, cap, key tokens per ms, key burst."""
        rate, key = self.rate, self.key_rate
        return [
            repr(rate.per_second / 1000) if rate else "0",
            str(rate.burst) if rate else "0",
            str(self.concurrency or 0),
            repr(key.per_second / 1000) if key else "0",
            str(key.burst) if key else "0",
        ]


def limit_key_of(
    limit_key: LimitKey | None, body: Any, headers: Mapping[str, str] | None
) -> str | None:
    """The limit key of one message (None: no key), as it goes into the header.

    A key that is not short and plain (letters, digits, ``_ . - / + = @``, up to 64) is
    replaced by a hash of it, so that it can sit in the header and in Redis field names.
    """
    if limit_key is None:
        return None
    if isinstance(limit_key, str):
        key = (headers or {}).get(limit_key)
    else:
        key = limit_key(body, headers or {})
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        key = str(key)
    if _KEY_OK.match(key):
        return key
    return "h." + hashlib.sha256(key.encode()).hexdigest()[:24]


def mark_entry(entry: bytes, priority: int, key: str | None) -> bytes:
    """Insert the priority and limit-key segments into a fresh entry's header."""
    if not priority and key is None:
        return entry
    marks = (b"!%d:" % priority if priority else b"") + (
        b"@%s:" % key.encode() if key is not None else b""
    )
    return entry[:_FRESH_HEADER] + marks + entry[_FRESH_HEADER:]


def read_marks(rest: bytes) -> tuple[int, str | None, bytes]:
    """Split the segments off the header's tail (what follows the counters):
    ``(priority, limit key, kind + payload)``. Raises ValueError if malformed."""
    priority, key = 0, None
    if rest[:1] == b"!":
        end = rest.index(b":")
        priority = int(rest[1:end])
        rest = rest[end + 1 :]
    if rest[:1] == b"@":
        end = rest.index(b":")
        key = rest[1:end].decode("ascii")
        rest = rest[end + 1 :]
    return priority, key, rest


def mark_for(
    queue: Any,
    entry: bytes,
    priority: int,
    body: Any,
    headers: Mapping[str, str] | None,
) -> bytes:
    """``entry`` marked with ``priority`` and the limit key that the consumer registered
    on ``queue``'s relay derives from the message (the producer computes it)."""
    consumer = queue.relay.consumers.get(queue.name)
    limit_key = consumer.options.limit_key if consumer is not None else None
    if not priority and limit_key is None:
        return entry
    return mark_entry(entry, priority, limit_key_of(limit_key, body, headers))


def put_prio_plan(
    shards: Sequence[QueueKeys],
    groups: Sequence[Sequence[int]],
    entries: Sequence[bytes],
    ids: list[str],
    tracked: bool,
    durability: Any,
) -> Plan[list[str]]:
    """``put_many(priority=)``: each shard's part (``groups``: indices of ``entries``, for
    a sharded queue) in one put_prio.lua call, all or nothing per shard, after its
    records when the queue keeps results. Returns ``ids``."""
    wait = None if durability is None else durability.command()
    for k, group in zip(shards, groups, strict=True):
        index = list(group) if len(shards) > 1 else list(range(len(entries)))
        part = [entries[i] for i in index]
        if not part:
            continue
        if tracked:  # the records first (docs/results.md)
            track = [
                c for i in index for c in track_commands(k, ids[i], False, entries[i])
            ]
            yield Step(track, transaction=True)
        keys = [k.ready, k.prio, k.prio_seq]
        reply = yield Step(script="put_prio", keys=keys, args=part, wait=wait)
        if durability is not None:
            durability.check(reply[1], ids)
    return ids
