"""A model of one queue, checked step by step against the real server; and a fuzz of
the entry decoder.

The state machine drives the queue through :class:`~redrelay.worker.leases.Lease` (the
worker's own transitions) and :class:`~redrelay.Queue` — put, put_many, fetch, ack,
retry, bury, mark, release, leave, crash (the lease expires and is recovered), requeue
and purge of dead letters — and after every step compares the model with an atomic audit
of Redis: the same ids in each place (ready in the same order: FIFO), no id in two places,
every id ever put either somewhere or acked, the same delivery counters, the same stats.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import ClassVar

import orjson
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from redrelay import Relay
from redrelay.config import ConsumerOptions
from redrelay.errors import DecodeError
from redrelay.protocol.envelope import MAGIC, decode_entry, rewrite_header
from redrelay.protocol.transitions import dead_record
from redrelay.worker.dispatch import to_message
from redrelay.worker.leases import Batch, Lease, recover_expired

from .history import audit, entry_id

#: Far in the future: delayed messages become due only when a rule says so.
LATER = 3600.0


class QueueModel(RuleBasedStateMachine):
    """One queue, up to three consumers, and the model of where every message is."""

    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.relay = Relay(self.url, namespace=f"model-{secrets.token_hex(4)}")
        self.queue = self.relay.queue("m")
        self.keys = self.queue.keys
        self.conn = self.relay.connection
        self.client = redis.Redis.from_url(self.url)
        self.options = ConsumerOptions.build(lease=60)
        # the model
        self.ready: list[str] = []  # the next one out first
        self.delayed: set[str] = set()
        self.due: set[str] = set()  # delayed, and made due
        self.inflight: dict[str, dict[str, str]] = {}  # consumer -> tag -> id
        self.entries: dict[str, bytes] = {}  # tag -> entry as delivered
        self.marked: set[str] = set()
        self.dead: set[str] = set()
        self.acked: set[str] = set()
        self.purged: set[str] = set()
        self.stale: list[str] = []  # tags of consumers that crashed or left
        self.leases: dict[str, Lease] = {}
        self.deliveries: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.put_ids: set[str] = set()

    def teardown(self) -> None:
        for key in self.client.scan_iter(match=f"{self.relay.namespace}:*"):
            self.client.unlink(key)
        self.client.close()
        self.relay.close()

    # -- helpers -----------------------------------------------------------------------

    def _held(self) -> list[tuple[str, str]]:
        # insertion order, not sorted: consumer ids are random, and Hypothesis needs the
        # same draws to pick the same things when it replays a case
        return [(c, t) for c, tags in self.inflight.items() for t in tags]

    def _front(self, n: int) -> list[str]:
        """The ids of the n entries at the front of the ready list (next out first)."""
        if n == 0:
            return []
        return [
            str(entry_id(e))
            for e in reversed(self.client.lrange(self.keys.ready, -n, -1))
        ]

    def _back(self, n: int) -> list[str]:
        """The ids of the n entries at the back of the ready list (next out first)."""
        if n == 0:
            return []
        return [
            str(entry_id(e))
            for e in reversed(self.client.lrange(self.keys.ready, 0, n - 1))
        ]

    def _drop_consumer(self, cid: str) -> None:
        tags = self.inflight.pop(cid, {})
        self.stale += list(tags)
        for tag in tags:
            self.entries.pop(tag, None)
            self.marked.discard(tag)
        self.leases.pop(cid)

    # -- producing ---------------------------------------------------------------------

    @rule(delayed=st.booleans())
    def put(self, delayed: bool) -> None:
        msg_id = self.queue.put(
            {"n": len(self.put_ids)}, delay=LATER if delayed else None
        )
        self.put_ids.add(msg_id)
        if delayed:
            self.delayed.add(msg_id)
        else:
            self.ready.append(msg_id)

    @rule(n=st.integers(1, 5))
    def put_many(self, n: int) -> None:
        ids = self.queue.put_many([{"n": i} for i in range(n)])
        self.put_ids.update(ids)
        self.ready += ids

    @precondition(lambda self: self.delayed - self.due)
    @rule(data=st.data())
    def make_due(self, data: st.DataObject) -> None:
        msg_id = data.draw(st.sampled_from(sorted(self.delayed - self.due)))
        self.client.zadd(self.keys.delayed, {msg_id: 0}, xx=True)
        self.due.add(msg_id)

    # -- consuming ---------------------------------------------------------------------

    @precondition(lambda self: len(self.leases) < 3)
    @rule()
    def join(self) -> None:
        lease = Lease(self.conn, self.keys, self.options)
        lease.join()
        self.leases[lease.consumer_id] = lease

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), count=st.integers(1, 4))
    def fetch(self, data: st.DataObject, count: int) -> None:
        cid = data.draw(st.sampled_from(list(self.leases)))
        # due delayed messages are promoted first, to the back, in (score, member) order
        self.ready += sorted(self.due)
        self.delayed -= self.due
        self.due.clear()
        held, got = self.leases[cid].fetch(count)
        assert held == 0
        expected, self.ready = self.ready[:count], self.ready[count:]
        if not expected:
            assert isinstance(got, float), got
            return
        assert isinstance(got, Batch)
        assert [entry_id(e) for e in got.entries] == expected  # FIFO
        for tag, entry, msg_id in zip(got.tags, got.entries, expected, strict=True):
            assert decode_entry(entry).deliveries == self.deliveries[msg_id]
            self.inflight.setdefault(cid, {})[tag] = msg_id
            self.entries[tag] = entry

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        cid, _ = data.draw(st.sampled_from(self._held()))
        tags = data.draw(
            st.lists(st.sampled_from(list(self.inflight[cid])), min_size=1, unique=True)
        )
        assert self.leases[cid].ack(tags) == len(tags)
        for tag in tags:
            self.acked.add(self.inflight[cid].pop(tag))
            self.entries.pop(tag)
            self.marked.discard(tag)
        if not self.inflight[cid]:
            del self.inflight[cid]
        self.counters["acked"] += len(tags)

    @precondition(lambda self: self.stale and self.leases)
    @rule(data=st.data())
    def ack_stale(self, data: st.DataObject) -> None:
        """A consumer whose lease was taken over acks late: rejected, and counted."""
        tag = data.draw(st.sampled_from(self.stale))
        lease = next(iter(self.leases.values()))
        assert lease.ack([tag]) == 0
        self.counters["rejected"] += 1

    def _take(self, data: st.DataObject) -> tuple[str, str, str]:
        cid, tag = data.draw(st.sampled_from(self._held()))
        msg_id = self.inflight[cid].pop(tag)
        if not self.inflight[cid]:
            del self.inflight[cid]
        self.marked.discard(tag)
        return cid, tag, msg_id

    @precondition(lambda self: self._held())
    @rule(data=st.data(), delayed=st.booleans())
    def retry(self, data: st.DataObject, delayed: bool) -> None:
        cid, tag, msg_id = self._take(data)
        entry = self.entries.pop(tag)
        self.deliveries[msg_id] += 1
        self.failures[msg_id] += 1
        new = rewrite_header(entry, self.deliveries[msg_id], self.failures[msg_id])
        assert self.leases[cid].retry(tag, new, LATER if delayed else 0, msg_id)
        if delayed:
            self.delayed.add(msg_id)
        else:
            self.ready.append(msg_id)
        self.counters["retried"] += 1

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def bury(self, data: st.DataObject) -> None:
        cid, tag, msg_id = self._take(data)
        entry = self.entries.pop(tag)
        record = orjson.dumps(
            dead_record(
                id=msg_id, queue="m", entry=entry, reason="model", exc=None, attempt=1
            )
        )
        assert self.leases[cid].bury(tag, msg_id, record, 0)
        self.dead.add(msg_id)
        self.counters["dead"] += 1

    @precondition(lambda self: self._held())
    @rule(data=st.data())
    def mark(self, data: st.DataObject) -> None:
        cid, tag = data.draw(st.sampled_from(self._held()))
        assert self.leases[cid].mark(tag)
        self.marked.add(tag)

    @precondition(lambda self: [h for h in self._held() if h[1] not in self.marked])
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Give back unstarted (never marked) deliveries, to the front, in order."""
        cid, _ = data.draw(
            st.sampled_from([h for h in self._held() if h[1] not in self.marked])
        )
        unmarked = [t for t in self.inflight[cid] if t not in self.marked]
        tags = data.draw(st.lists(st.sampled_from(unmarked), min_size=1, unique=True))
        assert self.leases[cid].release(tags) == len(tags)
        ids = [self.inflight[cid].pop(t) for t in tags]
        for tag in tags:
            self.entries.pop(tag)
        if not self.inflight[cid]:
            del self.inflight[cid]
        self.ready = ids + self.ready

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The consumer dies: its lease expires, and a sweep takes back what it held."""
        cid = data.draw(st.sampled_from(list(self.leases)))
        held = self.inflight.get(cid, {})
        self.client.zadd(self.keys.leases, {cid: 0}, xx=True)
        assert recover_expired(self.conn, self.keys) == len(held)
        # Recovery counts a first delivery, and a redelivery only if it was marked.
        for tag, msg_id in held.items():
            if self.deliveries[msg_id] == 0 or tag in self.marked:
                self.deliveries[msg_id] += 1
        back = self._front(len(held))  # the order within a recovered batch is Redis's
        assert sorted(back) == sorted(held.values())
        self.ready = back + self.ready
        if held:
            self.counters["recovered"] += len(held)
        self._drop_consumer(cid)

    @rule()
    def sweep(self) -> None:
        """A sweep with no expired lease takes nothing."""
        assert recover_expired(self.conn, self.keys) == 0

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(list(self.leases)))
        held = self.inflight.get(cid, {})
        assert self.leases[cid].leave() == len(held)
        back = self._front(len(held))
        assert sorted(back) == sorted(held.values())
        self.ready = back + self.ready
        self._drop_consumer(cid)

    # -- dead letters ------------------------------------------------------------------

    @precondition(lambda self: self.dead)
    @rule(data=st.data(), everything=st.booleans())
    def requeue_dead(self, data: st.DataObject, everything: bool) -> None:
        ids = (
            None
            if everything
            else data.draw(
                st.lists(st.sampled_from(sorted(self.dead)), min_size=1, unique=True)
            )
        )
        chosen = set(self.dead) if ids is None else set(ids)
        assert self.queue.requeue_dead(ids) == len(chosen)
        back = self._back(len(chosen))
        assert sorted(back) == sorted(chosen)
        self.ready += back
        self.dead -= chosen
        for msg_id in chosen:
            self.deliveries[msg_id] = 0
            self.failures[msg_id] = 0

    @precondition(lambda self: self.dead)
    @rule(data=st.data(), everything=st.booleans())
    def purge_dead(self, data: st.DataObject, everything: bool) -> None:
        ids = (
            None
            if everything
            else data.draw(
                st.lists(st.sampled_from(sorted(self.dead)), min_size=1, unique=True)
            )
        )
        chosen = set(self.dead) if ids is None else set(ids)
        assert self.queue.purge_dead(ids) == len(chosen)
        self.dead -= chosen
        self.purged |= chosen

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        found = audit(self.client, self.keys)
        found.assert_consistent()  # no id in two places, data hashes agree, no orphans
        assert found.ready == self.ready
        assert set(found.delayed) == self.delayed
        assert found.inflight == self.inflight
        assert set(found.dead) == self.dead
        assert found.leases == set(self.leases)
        assert found.anonymous == 0

    @invariant()
    def nothing_is_lost(self) -> None:
        places = [
            set(self.ready),
            self.delayed,
            set(self._held_ids()),
            self.dead,
            self.acked,
            self.purged,
        ]
        assert sum(len(p) for p in places) == len(self.put_ids)  # disjoint ...
        assert set().union(*places) == self.put_ids  # ... and complete
        assert len(self.ready) == len(set(self.ready))

    def _held_ids(self) -> list[str]:
        return [i for tags in self.inflight.values() for i in tags.values()]

    @invariant()
    def counters_match(self) -> None:
        stats = {
            k.decode(): int(v) for k, v in self.client.hgetall(self.keys.stats).items()
        }
        assert {k: v for k, v in stats.items() if v} == {
            k: v for k, v in self.counters.items() if v
        }


def test_queue_matches_its_model(redrelay_url: str) -> None:
    QueueModel.url = redrelay_url
    run_state_machine_as_test(
        QueueModel,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# -- the entry decoder ---------------------------------------------------------------

_numbers = st.sampled_from(
    [b"0", b"1", b"7", b"-1", b"", b"x", b" 2", b"1_0", b"1e3", b"9" * 30]
)
_kinds = st.sampled_from([b"j", b"m", b"r", b"z", b"J", b"M", b"R", b"", b"\xff"])
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "i": _json | st.text(),
        "b": _json,
        "h": _json,
        "t": _json,
        "s": _json,
        "p": _json,
    },
).map(orjson.dumps)
_entries = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(lambda b: MAGIC + b),
    st.tuples(_numbers, _numbers, _kinds, _envelopes | st.binary(max_size=64)).map(
        lambda p: MAGIC + p[0] + b":" + p[1] + b":" + p[2] + p[3]
    ),
)


@settings(max_examples=500, deadline=None, database=None)
@given(_entries, st.sampled_from([None, b"k" * 16]))
def test_decode_entry_raises_only_decode_error(entry: bytes, key: bytes | None) -> None:
    try:
        decoded = decode_entry(entry, key)
    except DecodeError:
        return
    except Exception as exc:  # pragma: no cover - what the test is for
        raise AssertionError(f"decode_entry({entry!r}) raised {exc!r}") from exc
    if decoded.envelope is None:
        assert decoded.raw is not None
    else:
        assert isinstance(decoded.envelope["i"], str)


def test_decode_entry_handles_arbitrary_bytes_after_magic() -> None:
    """A quick exhaustive pass over short tails, as a regression net for the fuzzer."""
    for tail in [
        b"",
        b":",
        b"::",
        b":::",
        b"0:0:",
        b"0:0:j",
        b"0:0:r",
        b"0:0:r|",
        b"0:0:J",
    ]:
        try:
            decode_entry(MAGIC + tail)
        except DecodeError:
            pass


@example(entry=MAGIC + b'0:0:j{"i": "x", "b": 1, "t": "soon"}')
@settings(max_examples=200, deadline=None, database=None)
@given(_entries)
def test_every_entry_decode_accepts_makes_a_message(entry: bytes) -> None:
    try:
        decoded = decode_entry(entry)
    except DecodeError:
        return
    to_message("q", "c:1", decoded)
