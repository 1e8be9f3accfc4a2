"""Messages put by a producer that does not track them (docs/results.md, "Which puts are
tracked"): their outcome is stored, and nothing else is written for them (no record, no
running mark), in the same calls as tracked messages; and complete.lua's layout when
some of a call's deliveries were taken over."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redrelay import JobFailed, Message, Relay
from redrelay.protocol.keys import QueueKeys
from redrelay.protocol.results import Status, bucket_of, pack_outcome

from ..worker.helpers import wait_for
from .layout import bucket_holding, stored


def _client(relay: Relay) -> redis.Redis:
    return redis.Redis.from_url(relay.connection.url)


def test_tracked_and_untracked_messages_in_one_batch(
    make_relay: Callable[..., Relay],
) -> None:
    """Both get their outcome; only the tracked ones are marked running and have a
    record, which their ack deletes."""
    worker = make_relay()
    ns = worker.namespace
    tracking = make_relay(namespace=ns).queue("calc", results=True)
    plain = make_relay(namespace=ns).queue("calc")
    keys = QueueKeys.of(ns, "calc")
    client = _client(worker)
    marked: dict[str, bool] = {}

    @worker.consumer("calc", result_ttl=60)
    def calc(message: Message) -> Any:
        if message.body["tracked"]:
            # Named running by the complete call sent with the batch (a moment later).
            wait_for(
                lambda: client.sismember(keys.running, message.id), 10, what="mark"
            )
        marked[message.id] = bool(client.sismember(keys.running, message.id))
        return message.body["n"]

    # One batch, tracked ones first: when an untracked one runs, the marks have landed.
    tracked = [tracking.put({"n": i, "tracked": True}) for i in range(3)]
    untracked = [plain.put({"n": 10 + i, "tracked": False}) for i in range(3)]
    assert [client.exists(keys.job(i)) for i in tracked + untracked] == [1] * 3 + [
        0
    ] * 3
    assert [tracking.status(i) for i in untracked] == [Status.UNKNOWN] * 3
    worker.drain(timeout=20)
    assert marked == {i: i in tracked for i in tracked + untracked}
    assert not client.smembers(keys.running)
    assert not any(client.exists(keys.job(i)) for i in tracked + untracked)
    everything = stored(client, keys, tracked + untracked)
    assert [everything[i][0] for i in tracked + untracked] == [b"ok"] * 6
    assert [plain.result(i, timeout=0) for i in tracked + untracked] == [
        0, 1, 2, 10, 11, 12,
    ]  # fmt: skip
    assert [plain.status(i) for i in untracked] == [Status.SUCCEEDED] * 3


def test_an_untracked_death_then_its_requeue(make_relay: Callable[..., Relay]) -> None:
    """Without a record, the failure goes to a result bucket; run again from the dead
    letters, the message is read by its newest outcome."""
    worker = make_relay(retries=0)
    plain = make_relay(namespace=worker.namespace).queue("calc")
    keys = QueueKeys.of(worker.namespace, "calc")
    client = _client(worker)
    fail = threading.Event()
    fail.set()

    @worker.consumer("calc", result_ttl=60)
    def calc(message: Message) -> Any:
        if fail.is_set():
            raise ValueError("not yet")
        return "fine"

    msg_id = plain.put({})
    worker.drain(timeout=20, raise_on_failure=False)
    assert not client.exists(keys.job(msg_id))
    assert bucket_holding(client, keys, msg_id) is not None
    assert plain.status(msg_id) is Status.FAILED
    with pytest.raises(JobFailed, match="not yet") as failed:
        plain.result(msg_id, timeout=0)
    assert failed.value.error_type == "builtins.ValueError"
    fail.clear()
    assert plain.requeue_dead([msg_id]) == 1
    worker.drain(timeout=20)
    assert plain.status(msg_id) is Status.SUCCEEDED
    assert plain.result(msg_id, timeout=0) == "fine"
    assert not client.exists(keys.job(msg_id))


@pytest.mark.parametrize("shared", [False, True], ids=["outcomes", "one-outcome"])
def test_complete_writes_only_what_is_still_held(
    make_relay: Callable[..., Relay], shared: bool
) -> None:
    """complete.lua with two tracked and two untracked deliveries, one of each taken
    over: only the held ones are acked and get their outcome; only the held tracked one
    loses its record and its running mark, and is announced."""
    relay = make_relay()
    keys = QueueKeys.of(relay.namespace, "calc")
    client = _client(relay)
    inflight, ttl = keys.inflight("c1"), 60_000
    tags = ["c1:1", "c1:2", "c1:3", "c1:4"]  # tracked, tracked, untracked, untracked
    ids = ["id1", "id2", "id3", "id4"]
    client.hset(inflight, mapping={"c1:1": b"e1", "c1:3": b"e3"})  # 2 and 4 taken over
    for msg_id in ids[:2]:
        client.hset(keys.job(msg_id), mapping={"s": "q", "e": b"e"})
    client.sadd(keys.running, "id1", "id2")
    outcomes = (
        [pack_outcome("ok", b"jnull")]
        if shared
        else [pack_outcome("ok", b"j%d" % i) for i in range(1, 5)]
    )
    bucket = bucket_of(keys, ttl, 0)
    script_keys = [
        inflight, keys.stats, keys.started("c1"), keys.cancels, keys.history,
        keys.running, keys.results, bucket, keys.job("id1"), keys.job("id2"),
    ]  # fmt: skip
    args: list[Any] = [ttl, keys.done, 4, 2, len(outcomes), *tags, *ids, *outcomes]
    pubsub = client.pubsub()
    pubsub.subscribe(keys.done)
    wait_for(lambda: pubsub.get_message(timeout=0.1) is not None, 10, what="subscribed")
    try:
        held = relay.connection.run("complete", script_keys, [*args, "id5"])
        assert held == 2
        assert client.hgetall(bucket) == {
            b"id1": outcomes[0],
            b"id3": outcomes[0] if shared else outcomes[2],
        }
        assert not client.exists(inflight)
        assert [client.exists(keys.job(i)) for i in ids[:2]] == [0, 1]
        assert client.smembers(keys.running) == {b"id2", b"id5"}
        stats = client.hgetall(keys.stats)
        assert (stats[b"acked"], stats[b"rejected"]) == (b"2", b"2")
        announced = [
            m["data"]
            for m in iter(lambda: pubsub.get_message(timeout=1.0), None)
            if m["type"] == "message"
        ]
        assert announced == [b"id1"]
    finally:
        pubsub.close()
