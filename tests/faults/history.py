"""A Jepsen-style history of a fault run, its checker, and a Redis-side audit.

**Recording.** The producer side (the test) records every acknowledged send — a ``put``
that returned an id — and every send whose outcome is unknown (the call raised). The
consumer side (``tests/faults/app.py``) appends one line per handler event to a list on a
*separate* redis-server that the faults never touch, so killing or restarting the broker
loses no history::

    <message id> <pid> <attempt> <start|done> <unix time>

**Checking.** :func:`check` compares the two: a sent id that was neither processed (a
``done`` record) nor dead-lettered is *lost*; a processed id that was never sent is
*unexpected*; every ``done`` beyond the first is a *duplicate*. At-least-once allows
duplicates, but only as many as the faults can explain: a killed worker can have run,
and not yet acked, at most what it held (prefetch x concurrency).

**Auditing.** :func:`audit` reads every place a message of one queue can be in one atomic
Lua call — the ready list, the delayed set (and its data hash), each consumer's in-flight
hash, the dead set (and its data hash) — decodes the entries to ids, and lists every breach
of invariant 1 of DESIGN.md §3: an id in two places (or twice in one), a delayed or dead
member without its data (or the reverse), an in-flight hash whose consumer holds no lease
(nobody would ever recover it), a marked tag that is not in flight.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from redrelay.errors import DecodeError
from redrelay.protocol.envelope import decode_entry
from redrelay.protocol.keys import QueueKeys

__all__ = [
    "Audit",
    "History",
    "Run",
    "Verdict",
    "audit",
    "check",
    "entry_id",
]

#: The places of invariant 1, as named in audits and reports.
PLACES = ("ready", "delayed", "inflight", "dead")


@dataclass(frozen=True, slots=True)
class Run:
    """One handler event recorded by a worker."""

    id: str
    pid: int
    attempt: int
    event: str  # "start" or "done"
    t: float


class History:
    """The record of one fault run: sends (kept here) and handler runs (on ``url``).

    ``url`` is the history server, ``namespace`` the app's namespace (the key of the runs
    list is ``<namespace>:runs``, the one ``tests/faults/app.py`` writes).
    """

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.client = redis.Redis.from_url(url)
        self.runs_key = f"{namespace}:runs"
        #: id -> unix time the put returned (acknowledged sends).
        self.sent: dict[str, float] = {}
        #: Sends whose call raised: they may or may not have been written.
        self.unknown = 0
        #: (unix time, kind, detail) of every fault injected.
        self.faults: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def record_sent(self, ids: Iterable[str]) -> None:
        now = time.time()
        with self._lock:
            for msg_id in ids:
                self.sent[msg_id] = now

    def record_unknown(self, count: int = 1) -> None:
        with self._lock:
            self.unknown += count

    def record_fault(self, kind: str, detail: str = "") -> float:
        now = time.time()
        with self._lock:
            self.faults.append((now, kind, detail))
        return now

    def runs(self) -> list[Run]:
        """Every handler event so far, in the order the history server received them."""
        out = []
        for raw in self.client.lrange(self.runs_key, 0, -1):
            msg_id, pid, attempt, event, t = raw.decode().split()
            out.append(Run(msg_id, int(pid), int(attempt), event, float(t)))
        return out

    def done_ids(self) -> set[str]:
        return {r.id for r in self.runs() if r.event == "done"}


@dataclass(slots=True)
class Verdict:
    """What :func:`check` found. ``lost`` and ``unexpected`` must be empty."""

    sent: int
    processed: int
    dead: int
    lost: list[str]
    unexpected: list[str]
    #: ``done`` records beyond the first, summed over ids.
    duplicates: int
    #: Ids processed more than once.
    duplicated_ids: int
    #: Ids started twice at attempt 1: a message handed out twice as a *first* delivery
    #: (a double promotion, a put written twice) rather than redelivered after a fault.
    double_first: list[str]
    #: Runs that started and never finished (cut by a fault).
    interrupted: int
    max_attempt: int
    unknown_sends: int

    def summary(self) -> str:
        return (
            f"sent={self.sent} processed={self.processed} dead={self.dead} "
            f"lost={len(self.lost)} unexpected={len(self.unexpected)} "
            f"duplicates={self.duplicates} (ids={self.duplicated_ids}) "
            f"interrupted={self.interrupted} max_attempt={self.max_attempt} "
            f"unknown_sends={self.unknown_sends}"
        )

    def assert_ok(
        self,
        *,
        max_duplicates: int,
        max_unexpected: int = 0,
        max_double_first: int = 0,
    ) -> None:
        """Fail with the summary if anything was lost or the faults cannot explain it.

        ``max_double_first``: a producer call retried after its reply was lost writes its
        messages again, under the same ids (only ``dedup_key=`` prevents that).
        """
        problems = []
        if self.lost:
            problems.append(f"lost {len(self.lost)}: {self.lost[:10]}")
        if len(self.unexpected) > max_unexpected:
            problems.append(
                f"{len(self.unexpected)} unexpected (allowed {max_unexpected}): "
                f"{self.unexpected[:10]}"
            )
        if self.duplicates > max_duplicates:
            problems.append(
                f"{self.duplicates} duplicates, over the bound of {max_duplicates}"
            )
        if len(self.double_first) > max_double_first:
            problems.append(
                f"{len(self.double_first)} ids handed out twice as first deliveries: "
                f"{self.double_first[:10]}"
            )
        assert not problems, "; ".join(problems) + f" [{self.summary()}]"


def check(history: History, *, dead: Iterable[str] = ()) -> Verdict:
    """Compare what was sent with what ran (and what is dead)."""
    runs = history.runs()
    done: Counter[str] = Counter()
    first_starts: Counter[str] = Counter()
    open_starts: Counter[tuple[str, int, int]] = Counter()
    max_attempt = 0
    for run in runs:
        key = (run.id, run.pid, run.attempt)
        if run.event == "start":
            open_starts[key] += 1
            if run.attempt == 1:
                first_starts[run.id] += 1
            max_attempt = max(max_attempt, run.attempt)
        else:
            done[run.id] += 1
            open_starts[key] -= 1
    sent = set(history.sent)
    dead_ids = set(dead) - set(done)
    return Verdict(
        sent=len(sent),
        processed=len(sent & set(done)),
        dead=len(sent & dead_ids),
        lost=sorted(sent - set(done) - dead_ids),
        unexpected=sorted(set(done) - sent),
        duplicates=sum(n - 1 for n in done.values()),
        duplicated_ids=sum(1 for n in done.values() if n > 1),
        double_first=sorted(i for i, n in first_starts.items() if n > 1),
        interrupted=sum(n for n in open_starts.values() if n > 0),
        max_attempt=max_attempt,
        unknown_sends=history.unknown,
    )


# -- the Redis-side audit ------------------------------------------------------------

_AUDIT = """
local p = ARGV[1]
local function tagged(pattern, read)
  local out = {}
  for _, key in ipairs(redis.call('KEYS', pattern)) do
    out[#out + 1] = key
    out[#out + 1] = redis.call(read, key)
  end
  return out
end
return {
  redis.call('LRANGE', p .. ':ready', 0, -1),
  redis.call('ZRANGE', p .. ':delayed', 0, -1),
  redis.call('HGETALL', p .. ':delayed:data'),
  redis.call('ZRANGE', p .. ':dead', 0, -1),
  redis.call('HKEYS', p .. ':dead:data'),
  redis.call('ZRANGE', p .. ':leases', 0, -1),
  tagged(p .. ':inflight:*', 'HGETALL'),
  tagged(p .. ':started:*', 'HKEYS'),
}
"""


def entry_id(entry: bytes) -> str | None:
    """The message id of a queue entry; None for a raw body never delivered, or garbage."""
    try:
        decoded = decode_entry(entry)
    except DecodeError:
        return None
    if decoded.envelope is not None:
        return str(decoded.envelope["i"])
    return decoded.raw_id


def _pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


@dataclass(slots=True)
class Audit:
    """One atomic snapshot of a queue's places, by message id."""

    #: Ids in the ready list, the next one out first.
    ready: list[str] = field(default_factory=list)
    delayed: list[str] = field(default_factory=list)
    #: consumer id -> delivery tag -> message id.
    inflight: dict[str, dict[str, str]] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)
    #: Consumers holding a lease entry (live or expired, not yet recovered).
    leases: set[str] = field(default_factory=set)
    #: Entries with no id: raw bodies never delivered, and malformed entries.
    anonymous: int = 0
    problems: list[str] = field(default_factory=list)

    def places(self) -> dict[str, list[str]]:
        """id -> every place it was found in (more than one is a breach)."""
        found: dict[str, list[str]] = defaultdict(list)
        for msg_id in self.ready:
            found[msg_id].append("ready")
        for msg_id in self.delayed:
            found[msg_id].append("delayed")
        for consumer, tags in self.inflight.items():
            for msg_id in tags.values():
                found[msg_id].append(f"inflight:{consumer}")
        for msg_id in self.dead:
            found[msg_id].append("dead")
        return found

    def ids(self) -> set[str]:
        return set(self.places())

    @property
    def in_flight(self) -> int:
        return sum(len(tags) for tags in self.inflight.values())

    def held_by(self, consumers: Iterable[str]) -> set[str]:
        """Ids in the in-flight hashes of these consumers."""
        return {i for c in consumers for i in self.inflight.get(c, {}).values()}

    def assert_consistent(self) -> None:
        """Invariant 1: no breach found (see the module docstring)."""
        assert not self.problems, "\n".join(self.problems[:20])


def audit(client: redis.Redis, keys: QueueKeys) -> Audit:
    """Snapshot every place of the queue ``keys`` in one atomic step, and check it."""
    reply = client.eval(_AUDIT, 0, keys.prefix)
    ready, delayed, delayed_data, dead, dead_data, leases, inflight, started = reply
    result = Audit(leases={c.decode() for c in leases})
    for entry in reversed(ready):  # consumers take from the right: that is the front
        msg_id = entry_id(entry)
        if msg_id is None:
            result.anonymous += 1
        else:
            result.ready.append(msg_id)
    result.delayed = [m.decode() for m in delayed]
    result.dead = [m.decode() for m in dead]
    _check_data(result, delayed_data, dead_data)
    _read_inflight(result, keys, inflight, started)
    for msg_id, where in result.places().items():
        if len(where) > 1 and not msg_id.startswith("anonymous:"):
            result.problems.append(
                f"message {msg_id} is in {len(where)} places: {where}"
            )
    return result


def _check_data(
    result: Audit, delayed_data: list[bytes], dead_data: list[bytes]
) -> None:
    """The delayed and dead sets and their data hashes name the same ids."""
    data = {k.decode(): v for k, v in _pairs(delayed_data)}
    if set(data) != set(result.delayed):
        result.problems.append(
            f"delayed set and its data differ: {sorted(set(data) ^ set(result.delayed))[:10]}"
        )
    for member, entry in data.items():
        if entry_id(entry) not in (member, None):
            result.problems.append(
                f"delayed member {member} holds the entry of {entry_id(entry)}"
            )
    dead_keys = {k.decode() for k in dead_data}
    if dead_keys != set(result.dead):
        result.problems.append(
            f"dead set and its records differ: {sorted(dead_keys ^ set(result.dead))[:10]}"
        )


def _read_inflight(
    result: Audit, keys: QueueKeys, inflight: list[Any], started: list[Any]
) -> None:
    """Each consumer's deliveries; a consumer without a lease, a tag in the wrong hash or
    a marked tag that is not in flight is a problem."""
    prefix_len = len(keys.prefix) + len(":inflight:")
    for key, flat in _pairs(inflight):
        consumer = key.decode()[prefix_len:]
        tags: dict[str, str] = {}
        for raw_tag, entry in _pairs(flat):
            tag = raw_tag.decode()
            msg_id = entry_id(entry)
            if msg_id is None:
                result.anonymous += 1
                msg_id = f"anonymous:{tag}"
            tags[tag] = msg_id
            if not tag.startswith(consumer + ":"):
                result.problems.append(f"tag {tag} in the hash of consumer {consumer}")
        result.inflight[consumer] = tags
        if consumer not in result.leases:
            result.problems.append(
                f"consumer {consumer} holds {len(tags)} deliveries but no lease: "
                "nobody would ever recover them"
            )
    started_len = len(keys.prefix) + len(":started:")
    for key, marked in _pairs(started):
        consumer = key.decode()[started_len:]
        held = result.inflight.get(consumer, {})
        stray = [t.decode() for t in marked if t.decode() not in held]
        if stray:
            result.problems.append(
                f"consumer {consumer} marked tags not in flight: {stray[:5]}"
            )


def settled_audit(client: redis.Redis, keys: QueueKeys, timeout: float = 30.0) -> Audit:
    """The audit once nothing is ready or in flight any more (at most ``timeout`` s).

    For the end of a test, after every message was seen done: a handler records "done"
    before its ack is applied, and acks are batched, so the last ones land a moment
    later. The caller still asserts on the audit it gets (a timeout returns it as is).
    """
    deadline = time.monotonic() + timeout
    while True:
        state = audit(client, keys)
        if (not state.ready and state.in_flight == 0) or time.monotonic() > deadline:
            return state
        time.sleep(0.05)
