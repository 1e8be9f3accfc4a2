"""Poison: failing handlers, handlers that kill their process, and malformed entries."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from redrelay import Relay
from redrelay._server import RedisServer
from redrelay.errors import DecodeError
from redrelay.protocol.envelope import MAGIC, decode_entry

from .history import History, audit
from .workers import FaultWorker, report, unexpected_errors, wait_for


@pytest.fixture
def broker(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(appendonly=False)


def test_failing_handler_is_dead_lettered_after_retries_plus_one_attempts(
    broker: RedisServer,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    q = Relay(broker.url, namespace=namespace).queue("work")
    worker = spawn(broker.url, FAULTS_RETRIES=2, FAULTS_CONCURRENCY=2)
    (poison,) = q.put_many([{"op": "fail"}])
    healthy = q.put_many([{"op": "ok"}] * 20)
    history.record_sent(healthy)
    wait_for(lambda: q.stats().dead == 1, what="the failing message dead")
    wait_for(lambda: set(healthy) <= history.done_ids(), what="the others done")
    (dead,) = q.dead_letters()
    starts = [
        r.attempt for r in history.runs() if r.id == poison and r.event == "start"
    ]
    assert dead.id == poison
    assert starts == [1, 2, 3]  # retries + 1 attempts, then no more
    assert dead.attempt == 3
    assert "failed 3 times (retries=2)" in dead.reason
    assert dead.traceback is not None
    assert "Traceback (most recent call last)" in dead.traceback
    assert "RuntimeError: asked to fail" in dead.traceback
    assert not unexpected_errors(worker)


def test_handler_that_kills_its_process_is_dead_lettered_after_max_deliveries(
    broker: RedisServer,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    q = Relay(broker.url, namespace=namespace).queue("work")
    (poison,) = q.put_many([{"op": "die"}])
    healthy = q.put_many([{"op": "ok"}] * 10)
    history.record_sent(healthy)
    spawn(
        broker.url,
        "--processes",
        "2",  # the supervisor replaces each child the poison kills
        FAULTS_LEASE=1,
        FAULTS_MAX_DELIVERIES=3,
        FAULTS_CONCURRENCY=1,
        FAULTS_PREFETCH=1,
    )
    wait_for(lambda: q.stats().dead == 1, timeout=60, what="the poison dead")
    wait_for(lambda: set(healthy) <= history.done_ids(), what="the others done")
    (dead,) = q.dead_letters()
    runs = history.runs()
    starts = [r.attempt for r in runs if r.id == poison and r.event == "start"]
    report("poison_kills_process", max_deliveries=3, handler_runs=len(starts))
    assert dead.id == poison
    assert starts == [1, 2, 3]  # it killed 3 processes, then was not run again
    assert dead.attempt == 4
    assert "max_deliveries=3" in dead.reason
    assert len({r.pid for r in runs if r.id == poison}) == 3


def _malformed(rng: random.Random, n: int) -> list[bytes]:
    """``n`` distinct entries that start like an envelope but do not decode."""
    templates = [
        b"x%d:0:j{}",
        b"%d",
        b"0:%d:",
        b'0:0:j{"i": "%d", "b": ',
        b"0:0:j[%d, 2, 3]",
        b'0:0:j{"b": %d}',
        b'0:0:j{"i": "m%d", "b": 1, "h": {"a": 1}}',
        b'0:0:j{"i": "m%d", "b": 1, "h": ["x"]}',
        b"0:0:z%d",
        b"0:0:rno-bar-%d",
        b"0:0:m\xc1%d",
        b"0:0:Jshort-signature-%d",
        b"1e400:%d:j{}",
    ]
    out = []
    for i in range(n):
        entry = MAGIC + templates[i % len(templates)] % i
        if i % 7 == 0:
            entry += rng.randbytes(rng.randrange(0, 40))
        try:
            decode_entry(entry)
        except DecodeError:
            out.append(entry)
        else:  # pragma: no cover - the random tail made a valid entry
            out.append(MAGIC + b"%d" % i)
    return out


def test_malformed_entries_are_dead_lettered_and_crash_nothing(
    broker: RedisServer,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    """10,000 malformed entries pushed by another program while a healthy worker runs:
    every one is dead-lettered with its reason, the healthy messages around them are
    processed, and the worker neither dies nor hits an unexpected error."""
    client = redis.Redis.from_url(broker.url)
    q = Relay(broker.url, namespace=namespace).queue("work")
    worker = spawn(broker.url, FAULTS_CONCURRENCY=4, FAULTS_PREFETCH=50)
    bad = _malformed(random.Random(7), 10_000)
    t0 = time.monotonic()
    for start in range(0, len(bad), 1000):
        client.lpush(q.keys.ready, *bad[start : start + 1000])
        history.record_sent(q.put_many([{"op": "ok"}] * 50))
    wait_for(
        lambda: q.stats().dead == len(bad) and set(history.sent) <= history.done_ids(),
        timeout=60,
        interval=0.2,
        what="all malformed entries dead and the healthy ones done",
    )
    elapsed = time.monotonic() - t0
    letters = q.dead_letters(limit=len(bad))
    reasons = Counter(d.reason.split(":")[1].strip() for d in letters)
    report(
        "malformed",
        entries=len(bad),
        dead=len(letters),
        seconds=round(elapsed, 1),
        reasons=len(reasons),
    )
    assert len(letters) == len(bad)
    assert all(d.reason.startswith("malformed entry: ") for d in letters)
    assert sorted(d.entry for d in letters) == sorted(bad)  # the raw bytes are kept
    assert worker.alive()
    assert not unexpected_errors(worker), unexpected_errors(worker)[:5]
    final = audit(client, q.keys)
    final.assert_consistent()
    assert (final.ready, final.in_flight) == ([], 0)


BAD_TIME = MAGIC + b'0:0:j{"i": "bad-time", "b": 1, "t": "soon"}'


def test_envelope_with_a_non_numeric_time_is_dead_lettered(
    broker: RedisServer,
    history: History,
    spawn: Callable[..., FaultWorker],
    namespace: str,
) -> None:
    client = redis.Redis.from_url(broker.url)
    q = Relay(broker.url, namespace=namespace).queue("work")
    worker = spawn(broker.url, FAULTS_CONCURRENCY=1)
    client.lpush(q.keys.ready, BAD_TIME)
    history.record_sent(q.put_many([{"op": "ok"}] * 5))
    wait_for(
        lambda: client.zcard(q.keys.dead) == 1 or unexpected_errors(worker),
        timeout=15,
        what="dead-lettered, or an unexpected error",
    )
    assert not unexpected_errors(worker), unexpected_errors(worker)[:3]
    (dead,) = q.dead_letters()
    assert dead.reason.startswith("malformed entry: ")
    wait_for(lambda: set(history.sent) <= history.done_ids(), what="the others done")


def test_stats_survive_an_entry_with_a_non_numeric_time(relay: Relay) -> None:
    q = relay.queue("work")
    relay.connection.call("LPUSH", q.keys.ready, BAD_TIME)
    stats = q.stats()
    assert stats.ready == 1
    assert stats.oldest_age is None
