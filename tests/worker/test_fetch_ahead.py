"""The fetch sent ahead (worker/fetcher.py): bounded, given back on stop, safe to resend."""

from __future__ import annotations

import threading

from redrelay import Message, Relay
from redrelay.protocol.envelope import decode_entry
from redrelay.worker.fetcher import Fetcher
from redrelay.worker.leases import Batch, Fetch, Lease
from redrelay.worker.runner import Runner
from redrelay.worker.timelimit import Slot

from .helpers import wait_for


def test_quick_handlers_fetch_ahead_and_stop_gives_both_batches_back_in_order(
    relay: Relay,
) -> None:
    q = relay.queue("q")
    ids = q.put_many(list(range(200)))
    seen: list[int] = []
    in_flight: list[int] = []
    running, gate = threading.Event(), threading.Event()

    @relay.consumer("q", prefetch=10)
    def handler(message: Message) -> None:
        seen.append(message.body)
        in_flight.append(q.stats().in_flight)
        if len(seen) == 95:  # in the tenth batch: the eleventh is on its way
            running.set()
            gate.wait(10)

    runner = Runner(relay, subscribers=False)
    runner.start()
    assert running.wait(10)
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    # while the handler still runs, stop() gives back the unstarted deliveries of this
    # batch and the batch fetched ahead
    wait_for(lambda: q.stats().ready == 105, timeout=5, what="both batches given back")
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert seen == list(range(95))
    assert max(in_flight) == 20  # two batches of 10, never more
    stats = q.stats()
    assert (stats.ready, stats.in_flight, stats.consumers) == (105, 0, 0)
    assert stats.counters.get("acked") == 95
    ready = q.peek(105)
    assert [m.id for m in ready] == ids[95:]  # back at the front, in order
    assert {m.attempt for m in ready} == {1}  # given back unchanged: not a delivery


def test_slow_handlers_get_no_second_batch(relay: Relay) -> None:
    q = relay.queue("q")
    q.put_many(list(range(12)))
    in_flight: list[int] = []
    done = threading.Event()

    @relay.consumer("q", prefetch=3)
    def handler(message: Message) -> None:
        in_flight.append(q.stats().in_flight)
        done.wait(0.03)  # a batch of 3 takes longer than AHEAD_WITHIN
        if len(in_flight) == 12:
            done.set()

    relay.start()
    try:
        assert done.wait(15)
    finally:
        relay.stop()
    assert max(in_flight) == 3
    assert q.stats().counters.get("acked") == 12


def test_fetch_ahead_whose_reply_is_lost_is_sent_again_and_hands_back_what_it_took(
    relay: Relay,
) -> None:
    q = relay.queue("q")
    ids = q.put_many(list(range(30)))

    @relay.consumer("q", prefetch=10)
    def handler(message: Message) -> None:
        pass

    consumer = relay.consumers["q"]
    lease = Lease(relay.new_connection(), q.keys, consumer.options)
    lease.join()
    slot = Slot(consumer, lease)
    fetcher = Fetcher(lease, slot, threading.Event(), 0.01, lambda _l, _n: None)
    first = fetcher.next([])
    assert isinstance(first, Batch) and len(first.tags) == 10
    fetcher.quick = True
    slot.pending.clear()  # as if the batch ran
    acks = first.tags[:]
    fetcher.send_ahead(first, acks)
    assert acks == []  # they ride on the fetch ahead
    call = fetcher.call
    assert call is not None and call.reply is not None
    assert slot.ahead == call.reservation
    wait_for(lambda: q.stats().counters.get("acked") == 10, what="the fetch ran")
    call.reply.discard()  # its reply is lost
    call.reply = None
    assert q.stats().in_flight == 10  # taken by the fetch whose reply was lost
    again = fetcher.next([])  # sent again, same tags and acks
    assert isinstance(again, Batch)
    assert again.tags == call.reservation.tags()
    assert [decode_entry(e).envelope["i"] for e in again.entries] == ids[10:20]  # type: ignore[index]
    assert slot.ahead is None
    stats = q.stats()
    assert (stats.ready, stats.in_flight) == (10, 10)  # nothing taken twice
    assert stats.counters.get("acked") == 10
    assert stats.counters.get("rejected", 0) == 0
    # on the way out, everything unstarted goes back
    assert fetcher.close([]) == []
    stats = q.stats()
    assert (stats.ready, stats.in_flight) == (30 - 10, 0)
    assert [m.id for m in q.peek(20)] == ids[10:]
    lease.leave()


def test_fetch_sent_to_a_server_without_the_script_loads_it(relay: Relay) -> None:
    q = relay.queue("q")
    ids = q.put_many(["a", "b", "c"])

    @relay.consumer("q", prefetch=2)
    def handler(message: Message) -> None:
        pass

    lease = Lease(relay.new_connection(), q.keys, relay.consumers["q"].options)
    lease.join()
    relay.connection.call(
        "SCRIPT", "FLUSH"
    )  # as after a restart: EVALSHA gets NOSCRIPT
    call = Fetch(lease.reserve(2), [])
    lease.send_fetch(call)
    held, batch = lease.receive(call)
    assert held == 0 and isinstance(batch, Batch)
    assert [decode_entry(e).envelope["i"] for e in batch.entries] == ids[:2]  # type: ignore[index]
    assert q.stats().in_flight == 2
    lease.leave()
