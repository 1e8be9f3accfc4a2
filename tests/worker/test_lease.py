"""Leases and lease tokens, driven step by step with Lease objects on a real server."""

from __future__ import annotations

import threading

from redrelay import Message, Relay
from redrelay.protocol.envelope import decode_entry
from redrelay.worker.leases import Batch, Lease, recover_expired

from .helpers import joined_lease as _lease
from .helpers import queued_body as _body
from .helpers import wait_for


def _expire(relay: Relay, lease: Lease) -> None:
    relay.connection.call("ZADD", lease.keys.leases, 0, lease.consumer_id)


def test_stale_consumer_ack_is_rejected_and_counted(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(["a", "b"])
    stale = _lease(relay)
    _, batch = stale.fetch(10)
    assert isinstance(batch, Batch) and len(batch.tags) == 2
    _expire(relay, stale)
    assert recover_expired(relay.connection, q.keys) == 2
    rescuer = _lease(relay)
    _, taken = rescuer.fetch(10)
    assert isinstance(taken, Batch)
    assert [decode_entry(e).deliveries for e in taken.entries] == [
        1,
        1,
    ]  # counted at delivery
    # the stale consumer comes back: its ack, retry and bury all find nothing
    assert stale.ack(batch.tags) == 0
    assert stale.retry(batch.tags[0], batch.entries[0], 0, "id") is False
    assert stale.bury(batch.tags[1], "id", b"{}", 0) is False
    assert q.stats().counters["rejected"] == 4
    # acks that ride on a fetch are checked the same way
    assert stale.fetch(10, batch.tags) == (0, None)
    assert q.stats().counters["rejected"] == 6
    # ... and nothing it did touched the rescuer's deliveries
    held, nothing = rescuer.fetch(10, taken.tags)
    assert (held, nothing) == (2, -1.0)
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)


def test_lost_lease_is_noticed_and_rejoined_under_a_new_id(relay: Relay) -> None:
    lease = _lease(relay)
    old = lease.consumer_id
    _expire(relay, lease)
    recover_expired(relay.connection, lease.keys)
    assert lease.fetch(1) == (0, None)  # no live lease: refuse to fetch
    assert lease.heartbeat() is False
    assert lease.consumer_id != old and lease.lost == 1
    assert lease.heartbeat() is True


def test_live_lease_is_not_recovered(relay: Relay) -> None:
    relay.queue("q").put("a")
    lease = _lease(relay, lease=30)
    assert isinstance(lease.fetch(1)[1], Batch)
    assert recover_expired(relay.connection, lease.keys) == 0
    assert relay.queue("q").stats().in_flight == 1


def test_unstarted_entries_are_counted_once_per_crash_started_ones_every_time(
    relay: Relay,
) -> None:
    q = relay.queue("q")
    q.put_many(["poison", "bystander"])
    for _crash in range(3):
        lease = _lease(relay)
        _, batch = lease.fetch(10)
        assert isinstance(batch, Batch)
        entries = {
            _body(e): (t, e) for t, e in zip(batch.tags, batch.entries, strict=True)
        }
        tag, entry = entries["poison"]
        if decode_entry(entry).deliveries:
            assert lease.mark(
                tag
            )  # what the worker does before running a redelivered entry
        _expire(relay, lease)  # the process dies running "poison"
        recover_expired(relay.connection, q.keys)
    ready = relay.connection.call("LRANGE", q.keys.ready, 0, -1)
    counts = {_body(e): decode_entry(e).deliveries for e in ready}
    assert counts == {"poison": 3, "bystander": 1}


def test_start_and_stop_run_consumers_in_background_threads(relay: Relay) -> None:
    seen: list[str] = []
    done = threading.Event()

    @relay.consumer("q", concurrency=2)
    def handler(message: Message) -> None:
        seen.append(message.body)
        if len(seen) == 20:
            done.set()

    before = set(threading.enumerate())
    relay.start()
    relay.queue("q").put_many([str(i) for i in range(20)])
    assert done.wait(10)
    relay.stop()
    assert sorted(seen, key=int) == [str(i) for i in range(20)]
    wait_for(lambda: set(threading.enumerate()) <= before, what="runner threads gone")
    assert relay.queue("q").stats().consumers == 0
