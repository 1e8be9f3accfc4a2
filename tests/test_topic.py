"""Durable topics against a real redis-server (DESIGN §1, §5), run in-process with drain()."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from redrelay import (
    Backoff,
    ConfigurationError,
    InvalidName,
    Message,
    MessageTooLarge,
    Reject,
    Relay,
    Retry,
)
from redrelay.worker.topic_leases import GroupLease, create_group, recover_expired


def _record(relay: Relay, topic: str, group: str, **options: Any) -> list[Message]:
    seen: list[Message] = []

    @relay.subscriber(topic, group=group, **options)
    def handler(message: Message) -> None:
        seen.append(message)

    return seen


def _counters(relay: Relay, topic: str, group: str) -> dict[str, int]:
    for g in relay.topic(topic).stats().groups:
        if g.group == group:
            return g.counters
    raise AssertionError(f"no group {group!r}")


def test_publish_returns_stream_id_and_message_carries_everything(relay: Relay) -> None:
    seen = _record(relay, "orders", "billing", start="beginning")
    sid = relay.topic("orders").publish({"n": 1}, headers={"trace": "abc"})
    relay.drain(timeout=10)
    (m,) = seen
    assert m.stream_id == sid and m.topic == "orders" and m.queue is None
    assert m.body == {"n": 1} and m.headers == {"trace": "abc"}
    assert m.attempt == 1 and m.failures == 0 and m.enqueued_at > 0
    assert m.delivery_tag is not None and m.delivery_tag.endswith(sid)


def test_every_group_gets_every_message(relay: Relay) -> None:
    billing = _record(relay, "orders", "billing", start="beginning")
    mail = _record(relay, "orders", "mail", start="beginning")
    ids = relay.topic("orders").publish_many([{"n": i} for i in range(300)])
    assert len(ids) == len(set(ids)) == 300
    relay.drain(timeout=20)
    assert [m.body["n"] for m in billing] == list(range(300))  # in order, once
    assert [m.body["n"] for m in mail] == list(range(300))
    stats = relay.topic("orders").stats()
    assert stats.length == 300 and stats.last_id == ids[-1]
    assert [(g.group, g.pending, g.lag, g.counters["acked"]) for g in stats.groups] == [
        ("billing", 0, 0, 300),
        ("mail", 0, 0, 300),
    ]


def test_consumers_of_one_group_share_the_messages(
    make_relay: Callable[..., Relay],
) -> None:
    a = make_relay(prefetch=5)
    b = make_relay(namespace=a.namespace, prefetch=5)
    seen: dict[str, list[str]] = {"a": [], "b": []}
    # a starts first, and could run all 400 before b is up on a loaded machine: its
    # handlers hold their first entries until b has one (10 s at most; then the
    # assertion below tells), so that b's share does not depend on start-up times.
    b_took_one = threading.Event()
    for name, r in (("a", a), ("b", b)):

        @r.subscriber("orders", group="billing", start="beginning", concurrency=2)
        def handler(message: Message, name: str = name) -> None:
            if name == "b":
                b_took_one.set()
            elif not b_took_one.wait(10):
                b_took_one.set()  # gave up waiting: the rest run at once
            time.sleep(0.002)
            seen[name].append(message.id)

    ids = [m for m in a.topic("orders").publish_many(list(range(400)))]
    a.start()
    b.start()
    try:
        deadline = time.monotonic() + 30
        while len(seen["a"]) + len(seen["b"]) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        a.stop()
        b.stop()
    assert len(ids) == 400
    together = seen["a"] + seen["b"]
    assert len(together) == len(set(together)) == 400  # each one once in the group
    assert seen["a"] and seen["b"]  # both processes took part


def test_new_group_starts_now_by_default(relay: Relay) -> None:
    topic = relay.topic("orders")
    topic.publish("before")
    seen = _record(relay, "orders", "late")
    relay.drain(timeout=10, replay_topics=False)  # creates the group at "now"
    topic.publish("after")
    relay.drain(timeout=10, replay_topics=False)
    assert [m.body for m in seen] == ["after"]


def test_replay_from_beginning_from_an_id_and_from_a_time(
    make_relay: Callable[..., Relay],
) -> None:
    producer = make_relay()
    topic = producer.topic("events")
    first = topic.publish_many(["a", "b"])
    time.sleep(0.02)
    middle = datetime.now(timezone.utc)
    time.sleep(0.02)
    topic.publish_many(["c", "d"])
    results: dict[str, list[str]] = {}
    for group, start in (
        ("all", "beginning"),
        ("after-a", first[0]),
        ("since", middle),
        ("naive", middle.astimezone().replace(tzinfo=None)),
    ):
        consumer = make_relay(namespace=producer.namespace)
        seen = _record(consumer, "events", group, start=start)
        consumer.drain(timeout=10, replay_topics=False)
        results[group] = [m.body for m in seen]
    assert results == {
        "all": ["a", "b", "c", "d"],
        "after-a": ["b", "c", "d"],  # like Last-Event-ID: what came after that id
        "since": ["c", "d"],
        "naive": ["c", "d"],
    }


def test_existing_group_keeps_its_position(make_relay: Callable[..., Relay]) -> None:
    one = make_relay()
    seen = _record(one, "events", "g", start="beginning")
    one.topic("events").publish("x")
    one.drain(timeout=10)
    again = make_relay(namespace=one.namespace)
    seen_again = _record(again, "events", "g", start="beginning")
    again.drain(timeout=10)
    assert [m.body for m in seen] == ["x"] and seen_again == []


def test_failures_retry_with_backoff_then_dead_letter_then_requeue(
    relay: Relay,
) -> None:
    calls: list[tuple[str, int, int]] = []
    broken = {"on": True}

    @relay.subscriber(
        "orders", group="billing", start="beginning", retries=2, backoff=0.05
    )
    def bill(message: Message) -> None:
        calls.append((message.body, message.attempt, message.failures))
        if broken["on"] and message.body == "bad":
            raise RuntimeError("card declined")

    other = _record(relay, "orders", "mail", start="beginning")
    topic = relay.topic("orders")
    topic.publish_many(["ok", "bad"])
    relay.drain(timeout=10, raise_on_failure=False)
    assert calls == [("ok", 1, 0), ("bad", 1, 0), ("bad", 2, 1), ("bad", 3, 2)]
    (letter,) = topic.dead_letters("billing")
    assert (
        "failed 3 times (retries=2)" in letter.reason
        and "card declined" in letter.reason
    )
    assert letter.traceback is not None and "RuntimeError" in letter.traceback
    assert letter.body == "bad" and letter.queue == "orders"
    counters = _counters(relay, "orders", "billing")
    assert counters["retried"] == 2 and counters["dead"] == 1
    assert topic.dead_letters("mail") == []

    broken["on"] = False
    assert topic.requeue_dead("billing") == 1
    assert topic.requeue_dead("billing") == 0  # each letter moves once
    relay.drain(timeout=10, raise_on_failure=False)
    assert calls[-1] == ("bad", 1, 0)
    assert [m.body for m in other] == ["ok", "bad"]  # mail does not see the requeue
    assert topic.dead_letters("billing") == []


def test_retry_and_reject_from_the_handler(relay: Relay) -> None:
    seen: list[tuple[str, int]] = []

    @relay.subscriber("t", group="g", start="beginning", retries=0)
    def handler(message: Message) -> None:
        seen.append((message.body, message.failures))
        if message.body == "later" and message.attempt == 1:
            raise Retry(delay=0.05, count=False)
        if message.body == "never":
            raise Reject("not for us")

    relay.topic("t").publish_many(["later", "never"])
    relay.drain(timeout=10, raise_on_failure=False)
    assert seen == [("later", 0), ("never", 0), ("later", 0)]
    (letter,) = relay.topic("t").dead_letters("g")
    assert letter.reason == "rejected: not for us"
    assert relay.topic("t").purge_dead("g") == 1
    assert relay.topic("t").dead_letters("g") == []


def test_malformed_and_forged_entries_are_dead_lettered(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay(signing_key="k" * 32)
    seen = _record(relay, "t", "g", start="beginning")
    topic = relay.topic("t")
    topic.publish("signed")
    relay.connection.call("XADD", topic.keys.stream, "*", "e", b"\x1frr1:0:0:jnot json")
    relay.connection.call("XADD", topic.keys.stream, "*", "e", b"plain bytes")
    relay.drain(timeout=10)
    assert [m.body for m in seen] == ["signed"]
    reasons = sorted(d.reason for d in topic.dead_letters("g"))
    assert len(reasons) == 2 and all(r.startswith("malformed entry") for r in reasons)


def test_dead_consumer_is_recovered_and_its_late_ack_rejected(relay: Relay) -> None:
    seen = _record(relay, "t", "g", start="beginning", lease=1.0)
    (sub,) = relay.topic_subscribers
    topic = relay.topic("t")
    sids = topic.publish_many(["x", "y", "z"])
    conn = relay.connection
    create_group(conn, sub)
    stale = GroupLease(conn, sub)
    stale.join()
    got = stale.fetch(10, [], False)
    assert [i[0] for i in got.items] == sids
    # the consumer "dies": its lease runs out, a sweep gives its entries back
    conn.call("ZADD", sub.keys.leases, 0, stale.consumer_id)
    recover_expired(conn, sub)
    assert stale.ack(sids[:1]) == 0  # not its entry any more
    relay.drain(timeout=10)
    assert [(m.body, m.attempt) for m in seen] == [("x", 2), ("y", 2), ("z", 2)]
    counters = _counters(relay, "t", "g")
    assert counters["recovered"] == 3 and counters["rejected"] == 1
    assert counters["acked"] == 3 and "trimmed_pending" not in counters


def test_poison_entry_is_dead_lettered_after_max_deliveries(relay: Relay) -> None:
    seen = _record(relay, "t", "g", start="beginning", max_deliveries=2)
    (sub,) = relay.topic_subscribers
    relay.topic("t").publish("poison")
    conn = relay.connection
    create_group(conn, sub)
    for _ in range(2):  # two consumers die running it (a redelivery is marked started)
        lease = GroupLease(conn, sub)
        lease.join()
        ((sid, _, deliveries, _),) = lease.fetch(10, [], False).items
        if deliveries > 1:
            assert lease.mark(sid)
        conn.call("ZADD", sub.keys.leases, 0, lease.consumer_id)
        recover_expired(conn, sub)
    relay.drain(timeout=10)
    assert seen == []
    (letter,) = relay.topic("t").dead_letters("g")
    assert "max_deliveries=2" in letter.reason


def test_unstarted_redeliveries_are_not_counted_per_crash(relay: Relay) -> None:
    seen = _record(relay, "t", "g", start="beginning", max_deliveries=2)
    (sub,) = relay.topic_subscribers
    relay.topic("t").publish_many(["poison", "innocent"])
    conn = relay.connection
    create_group(conn, sub)
    for _ in range(4):  # four consumers die while the first entry of their batch runs
        lease = GroupLease(conn, sub)
        lease.join()
        items = lease.fetch(10, [], False).items
        if items and items[0][2] > 1:
            assert lease.mark(items[0][0])
        conn.call("ZADD", sub.keys.leases, 0, lease.consumer_id)
        recover_expired(conn, sub)
    relay.drain(timeout=10)
    assert [(m.body, m.attempt) for m in seen] == [("innocent", 2)]
    (letter,) = relay.topic("t").dead_letters("g")
    assert letter.body == "poison" and "max_deliveries=2" in letter.reason


def test_long_handler_is_not_redelivered(make_relay: Callable[..., Relay]) -> None:
    slow = make_relay(lease=0.6, heartbeat=0.1)
    idle = make_relay(namespace=slow.namespace, lease=0.6, heartbeat=0.1)
    runs: list[str] = []
    done = threading.Event()

    @slow.subscriber("t", group="g", start="beginning")
    def handler(message: Message) -> None:
        runs.append("slow")
        time.sleep(2.0)  # over 3 leases
        done.set()

    @idle.subscriber("t", group="g", start="beginning")
    def competitor(message: Message) -> None:
        runs.append("idle")

    slow.topic("t").publish("long")
    slow.start()
    time.sleep(0.3)
    idle.start()
    try:
        assert done.wait(20)
        slow.drain(timeout=10)
    finally:
        slow.stop()
        idle.stop()
    assert runs == ["slow"]
    assert _counters(slow, "t", "g").get("recovered", 0) == 0


def test_trimmed_entries_are_reported(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _record(relay, "t", "lagging", start="beginning")
    relay.drain(timeout=10)  # the group exists, at the start of an empty stream
    topic = relay.topic("t", maxlen=10)
    topic.publish_many(list(range(1000)))
    length = topic.stats().length
    assert length < 1000  # trimmed, approximately (whole nodes)
    with caplog.at_level(logging.WARNING, logger="redrelay.worker"):
        relay.drain(timeout=10)
    assert len(seen) == length
    assert [m.body for m in seen] == list(range(1000 - length, 1000))
    assert _counters(relay, "t", "lagging")["trimmed_unread"] == 1000 - length
    assert "trimmed from the stream before group lagging read them" in caplog.text


def test_retention_by_age(relay: Relay) -> None:
    topic = relay.topic("t", maxlen=None, max_age=0.05)
    topic.publish_many(list(range(300)))
    time.sleep(0.1)
    topic.publish("new")
    assert topic.stats().length < 301


def test_async_handler(relay: Relay) -> None:
    seen: list[object] = []

    @relay.subscriber("t", group="g", start="beginning")
    async def handler(message: Message) -> None:
        seen.append(message.body)

    relay.topic("t").publish("x")
    relay.drain(timeout=10)
    assert seen == ["x"]


WAIT = 15.0


def test_async_subscriber_runs_concurrently_on_the_shared_loop(
    make_relay: Callable[..., Relay],
) -> None:
    import asyncio

    relay = make_relay(lease=5)
    state: dict[str, Any] = {"in_flight": 0, "max": 0, "threads": set()}
    queue_threads: set[int] = set()

    @relay.subscriber("fan", group="g", start="beginning", concurrency=20)
    async def handler(message: Message) -> None:
        if "all_in" not in state:
            state["all_in"] = asyncio.Event()  # created on the worker's loop
        state["threads"].add(threading.get_ident())
        state["in_flight"] += 1
        state["max"] = max(state["max"], state["in_flight"])
        if state["in_flight"] == 20:
            state["all_in"].set()
        # Only reachable if all 20 run at once: one at a time would time out here.
        await asyncio.wait_for(state["all_in"].wait(), WAIT)
        state["in_flight"] -= 1

    @relay.consumer("jobs")
    async def job(message: Message) -> None:
        queue_threads.add(threading.get_ident())

    relay.topic("fan").publish_many(list(range(20)))
    relay.queue("jobs").put("x")
    relay.drain(timeout=WAIT * 2)
    counters = _counters(relay, "fan", "g")
    assert counters["acked"] == 20
    assert counters.get("retried", 0) == 0 and counters.get("dead", 0) == 0
    assert state["max"] == 20
    # one loop thread per worker: the queue's async consumer ran on the same one
    assert len(state["threads"]) == 1 and state["threads"] == queue_threads
    assert threading.get_ident() not in state["threads"]


def test_async_subscriber_retries_and_dead_letters_like_sync(relay: Relay) -> None:
    import asyncio
    import sys

    calls: list[tuple[str, int, int]] = []

    @relay.subscriber(
        "t", group="g", start="beginning", concurrency=4, retries=2, backoff=0.05
    )
    async def handler(message: Message) -> None:
        await asyncio.sleep(0)
        calls.append((message.body, message.attempt, message.failures))
        if message.body == "bad":
            raise RuntimeError("card declined")
        if message.body == "later" and message.attempt == 1:
            raise Retry(delay=0.05, count=False)
        if message.body == "never":
            raise Reject("not for us")
        if message.body == "exit":
            sys.exit(3)  # fails its delivery; the loop and the worker carry on

    other = _record(relay, "t", "mail", start="beginning")
    topic = relay.topic("t")
    topic.publish_many(["ok", "bad", "later", "never", "exit"])
    relay.drain(timeout=WAIT, raise_on_failure=False)
    by_body: dict[str, list[tuple[int, int]]] = {}
    for body, attempt, failures in calls:
        by_body.setdefault(body, []).append((attempt, failures))
    assert by_body == {
        "ok": [(1, 0)],
        "bad": [(1, 0), (2, 1), (3, 2)],
        "later": [(1, 0), (2, 0)],
        "never": [(1, 0)],
        "exit": [(1, 0), (2, 1), (3, 2)],
    }
    dead = {d.body: d for d in topic.dead_letters("g")}
    assert set(dead) == {"bad", "never", "exit"}
    assert "failed 3 times (retries=2)" in dead["bad"].reason
    assert "RuntimeError: card declined" in dead["bad"].reason
    assert dead["never"].reason == "rejected: not for us"
    assert "SystemExit: 3" in dead["exit"].reason  # its own class (issue 18)
    assert "SystemExit" in (dead["exit"].traceback or "")
    counters = _counters(relay, "t", "g")
    assert counters["acked"] == 2 and counters["dead"] == 3
    assert counters["retried"] == 5  # bad x2, exit x2, later x1
    assert sorted(m.body for m in other) == ["bad", "exit", "later", "never", "ok"]


def test_async_stop_gives_back_unstarted_entries(
    make_relay: Callable[..., Relay],
) -> None:
    import asyncio

    first = make_relay(prefetch=20)
    started = threading.Event()
    seen_first: list[int] = []

    @first.subscriber("t", group="g", start="beginning", concurrency=2)
    async def slow(message: Message) -> None:
        seen_first.append(message.body)
        if len(seen_first) == 2:
            started.set()
        await asyncio.sleep(0.2)

    first.topic("t").publish_many(list(range(20)))
    first.start()
    assert started.wait(10)
    first.stop(grace=10)  # the two running coroutines finish; the rest go back
    assert len(seen_first) < 20
    second = make_relay(namespace=first.namespace)
    seen_second = _record(second, "t", "g")
    second.drain(timeout=10)
    assert sorted(seen_first + [m.body for m in seen_second]) == list(range(20))
    (group,) = second.topic("t").stats().groups
    assert group.pending == 0 and group.consumers == 0
    assert group.counters.get("dead", 0) == 0


def test_apublish_and_apublish_many_reach_every_group(relay: Relay) -> None:
    """The async twins write the same entries (one copy of the logic: _publish_plan)."""
    import asyncio

    seen: list[object] = []

    @relay.subscriber("at", group="g", start="beginning")
    def handler(message: Message) -> None:
        seen.append(message.body)

    async def main() -> list[str]:
        topic = relay.topic("at")
        first = await topic.apublish({"n": 0}, headers={"k": "v"})
        rest = await topic.apublish_many([{"n": 1}, {"n": 2}])
        assert await topic.apublish_many([]) == []
        with pytest.raises(ConfigurationError):
            await topic.apublish({"n": 3}, headers={"k": 1})  # type: ignore[dict-item]
        return [first, *rest]

    ids = asyncio.run(main())
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [
        e[0]
        for e in relay.connection.call(
            "XRANGE", relay.topic("at").keys.stream, "-", "+"
        )
    ] == [i.encode() for i in ids]
    relay.drain(timeout=10)
    assert seen == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_bad_arguments_give_clear_errors(relay: Relay) -> None:
    with pytest.raises(ConfigurationError, match="start="):
        relay.subscriber("t", group="g", start="yesterday")
    with pytest.raises(InvalidName, match="group"):
        relay.subscriber("t", group="a:b")
    with pytest.raises(InvalidName, match="topic"):
        relay.subscriber("no spaces", group="g")
    with pytest.raises(ConfigurationError, match="retries apply only to topic"):
        relay.subscriber("news", retries=3)
    with pytest.raises(ConfigurationError, match="no pattern"):
        relay.subscriber("t.*", group="g", pattern=True)
    with pytest.raises(ConfigurationError, match="time_limit"):
        relay.subscriber("t", group="g", time_limit=1)
    with pytest.raises(ConfigurationError, match="prefetch="):
        relay.subscriber("t", group="g", prefetch=0)
    with pytest.raises(ConfigurationError, match="maxlen="):
        relay.topic("t", maxlen=-1)
    with pytest.raises(ConfigurationError, match="max_age="):
        relay.topic("t", max_age=timedelta(0))
    with pytest.raises(MessageTooLarge):
        relay.topic("t").publish("x" * 2_000_000)
    with pytest.raises(TypeError, match="index 1"):
        relay.topic("t").publish_many(["ok", object()])
    assert relay.topic("t").stats().length == 0  # nothing was written
    relay.subscriber("t", group="g")(lambda m: None)
    with pytest.raises(ConfigurationError, match="already has a subscriber"):
        relay.subscriber("t", group="g")(lambda m: None)


def test_entries_trimmed_before_a_beginning_group_existed_are_reported(
    relay: Relay,
) -> None:
    topic = relay.topic("t", maxlen=10)
    topic.publish_many(list(range(1000)))
    length = topic.stats().length
    seen = _record(relay, "t", "late", start="beginning")
    relay.drain(timeout=10)
    assert [m.body for m in seen] == list(range(1000 - length, 1000))
    assert _counters(relay, "t", "late")["trimmed_unread"] == 1000 - length
    topic.publish("more")  # caught up since: nothing more is reported
    relay.drain(timeout=10)
    assert _counters(relay, "t", "late")["trimmed_unread"] == 1000 - length


def test_entry_trimmed_while_waiting_for_its_retry_is_reported(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """The retry waits a fixed second, no jitter: the trim below must come first (a
    jittered 0.3 s backoff could fall under a few ms, and the retry then ran first)."""
    calls: list[int] = []
    backoff = Backoff(base=1.0, jitter=False)

    @relay.subscriber("t", group="g", start="beginning", retries=5, backoff=backoff)
    def handler(message: Message) -> None:
        calls.append(message.body)
        if message.body == 0:
            raise RuntimeError("try later")

    relay.start()
    try:
        relay.topic("t").publish(0)
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        # while entry 0 waits for its retry, retention trims it away
        relay.topic("t", maxlen=1).publish_many(list(range(1, 400)))
        with caplog.at_level(logging.WARNING, logger="redrelay.worker"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if _counters(relay, "t", "g").get("trimmed_pending"):
                    break
                time.sleep(0.05)
    finally:
        relay.stop()
    assert _counters(relay, "t", "g")["trimmed_pending"] == 1
    assert calls.count(0) == 1  # it was not run again: it is gone
    assert "trimmed before they were done" in caplog.text


def test_stop_gives_back_unstarted_entries(make_relay: Callable[..., Relay]) -> None:
    first = make_relay(prefetch=20)
    started = threading.Event()
    seen_first: list[int] = []

    @first.subscriber("t", group="g", start="beginning")
    def slow(message: Message) -> None:
        seen_first.append(message.body)
        started.set()
        time.sleep(0.2)

    first.topic("t").publish_many(list(range(20)))
    first.start()
    assert started.wait(10)
    first.stop(grace=10)  # the running handler finishes; the other 19 go back
    second = make_relay(namespace=first.namespace)
    seen_second = _record(second, "t", "g")
    second.drain(timeout=10)
    assert sorted(seen_first + [m.body for m in seen_second]) == list(range(20))
    (group,) = second.topic("t").stats().groups
    assert group.pending == 0 and group.consumers == 0


def test_a_fetch_whose_reply_was_lost_is_handed_out_again(relay: Relay) -> None:
    _record(relay, "t", "g", start="beginning")
    (sub,) = relay.topic_subscribers
    ids = relay.topic("t").publish_many(["a", "b", "c"])
    create_group(relay.connection, sub)
    lease = GroupLease(relay.connection, sub)
    lease.join()
    lease.fetch(2, [], False)  # its reply "is lost"
    again = lease.fetch(2, [], True)
    assert [i[0] for i in again.items] == ids[:2]
    nxt = lease.fetch(2, [i[0] for i in again.items], False)
    assert nxt.held == 2 and [i[0] for i in nxt.items] == ids[2:]


def test_entries_given_back_by_a_clean_stop_are_not_counted(
    make_relay: Callable[..., Relay],
) -> None:
    relay = make_relay()
    seen = _record(relay, "t", "g", start="beginning")
    (sub,) = relay.topic_subscribers
    relay.topic("t").publish_many(["a", "b"])
    create_group(relay.connection, sub)
    lease = GroupLease(relay.connection, sub)
    lease.join()
    assert len(lease.fetch(10, [], False).items) == 2
    assert lease.leave() == 2
    relay.drain(timeout=10)
    assert [(m.body, m.attempt) for m in seen] == [("a", 1), ("b", 1)]


def test_a_deleted_stream_is_recreated_with_its_group(relay: Relay) -> None:
    seen = _record(relay, "t", "g", start="beginning")
    relay.start()
    try:
        relay.topic("t").publish("first")
        deadline = time.monotonic() + 10
        while len(seen) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        relay.connection.call("DEL", relay.topic("t").keys.stream)  # FLUSHALL, say
        relay.topic("t").publish("second")
        while len(seen) < 2 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
    finally:
        relay.stop()
    assert [m.body for m in seen] == ["first", "second"]
