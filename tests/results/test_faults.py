"""SIGKILL of workers that store results: never a result without its ack, nor the reverse.

Rounds of: start two worker processes, let them work a random moment, SIGKILL both,
then audit Redis while nothing runs. Every message must be in exactly one place, and its
record must agree: waiting (ready, delayed, in flight) with no outcome, acked with its
value, dead with its failure. A result written without its ack (or an ack that lost its
result) shows up as a message that is both in flight and finished, or that is nowhere.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

import redis

from redrelay import Relay
from redrelay.protocol.envelope import decode_entry
from redrelay.protocol.keys import QueueKeys

from ..faults.workers import consumers_of
from ..processes import Worker, wait_for
from .layout import stored

Start = Callable[..., Worker]

MESSAGES = 6_000  # about four rounds of kills on 2 cores; at least 3 at 3,000 a round
MAX_ROUNDS = 40


def _ids(entries: list[bytes]) -> list[str]:
    out = []
    for entry in entries:
        decoded = decode_entry(entry)
        assert decoded.envelope is not None
        out.append(decoded.envelope["i"])
    return out


def _audit(
    client: redis.Redis, keys: QueueKeys, ids: list[str], expected: dict[str, int]
) -> dict[str, int]:
    """Check the invariants with no worker running; return counts per state."""
    waiting: list[str] = _ids(client.lrange(keys.ready, 0, -1))
    waiting += _ids(list(client.hgetall(keys.delayed_data).values()))
    for name in client.scan_iter(match=f"{keys.prefix}:inflight:*", count=1000):
        waiting += _ids(list(client.hgetall(name).values()))
    dead = {i.decode() for i in client.zrange(keys.dead, 0, -1)}
    assert len(waiting) == len(set(waiting)), "a message is in two places"
    assert not set(waiting) & dead, "a message is both waiting and dead"
    records = stored(client, keys, ids)
    counts: dict[str, int] = {}
    pending = set(waiting)
    for msg_id in ids:
        state, value = records[msg_id]
        state = state.decode() if state else "none"
        counts[state] = counts.get(state, 0) + 1
        if msg_id in pending:
            assert state in ("q", "r"), f"{msg_id} waits but its record says {state}"
        elif msg_id in dead:
            assert state == "fail", f"{msg_id} is dead but its record says {state}"
        else:
            # Acked: the ack and the result were one step.
            assert state == "ok", f"{msg_id} is gone from the queue with state {state}"
            assert value[:1] == b"j" and int(value[1:]) == expected[msg_id]
    # A finished message is no longer named running (the ack and the running set were
    # one step too).
    running = {m.decode() for m in client.smembers(keys.running)}
    finished = {i for i in ids if i not in pending}
    assert not running & finished, f"{len(running & finished)} finished but running"
    return counts


def _wait_joined(client: redis.Redis, keys: QueueKeys, workers: list[Worker]) -> None:
    wait_for(
        lambda: all(consumers_of(client, keys, w.pid) for w in workers),
        30,
        what="both workers joined",
    )


def test_sigkill_never_splits_result_and_ack(app: Relay, start_worker: Start) -> None:
    q = app.queue("calc")
    keys = QueueKeys.of(app.namespace, "calc")
    ids: list[str] = []
    expected: dict[str, int] = {}
    for start in range(0, MESSAGES, 1000):
        chunk = range(start, start + 1000)
        got = q.put_many(
            [{"op": "add", "a": i, "b": 1, "s": 0.001, "record": False} for i in chunk]
        )
        ids += got
        expected.update({msg_id: i + 1 for msg_id, i in zip(got, chunk, strict=True)})
    rng = random.Random(14)
    client = redis.Redis.from_url(app.connection.url)
    kills_mid_work = 0
    counts: dict[str, Any] = {}
    try:
        for _ in range(MAX_ROUNDS):
            workers = [
                start_worker(TEST_CONCURRENCY="2", TEST_RESULT_TTL="3600")
                for _ in range(2)
            ]
            # Work for a random moment once both have joined: a process's start-up
            # (seconds on a loaded machine) is not work, and a round spent in it only
            # made more rounds.
            _wait_joined(client, keys, workers)
            time.sleep(rng.uniform(0.3, 0.9))
            for worker in workers:
                worker.signal(signal.SIGKILL)
            for worker in workers:
                worker.wait()
            counts = _audit(client, keys, ids, expected)
            if counts.get("ok", 0) + counts.get("fail", 0) == MESSAGES:
                break
            kills_mid_work += 1  # a kill while work was left
        else:
            # Let one worker finish the rest (the dead consumers' leases expire first).
            start_worker(TEST_RESULT_TTL="3600")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if q.stats().ready + q.stats().in_flight + q.stats().delayed == 0:
                    break
                time.sleep(0.2)
            counts = _audit(client, keys, ids, expected)
        print(f"{kills_mid_work} kills while work was left; {counts}")
        assert counts.get("ok", 0) + counts.get("fail", 0) == MESSAGES, counts
        assert kills_mid_work >= 2, "the kills never landed while work was in progress"
        # The lifetime counter agrees: every ack wrote exactly one result.
        assert int(client.hget(keys.stats, "acked") or 0) == counts.get("ok", 0)
    finally:
        client.close()
