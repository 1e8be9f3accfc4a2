"""The acks a topic consumer sends with its next fetch (``topic_fetch.lua``) settle only the
entries that consumer still holds; any other id is rejected and counted.

The script reads the oldest entries the consumer holds with one ``XPENDING`` (as many as
there are acks), and checks id by id an ack missing from that reply only when the reply
may have been cut short: both paths are exercised here, with ids held by another consumer
of the group (one read: the consumer holds fewer entries than it acks).
"""

from __future__ import annotations

import pytest
import redis

from redrelay import Message, Relay
from redrelay.errors import RedrelayError
from redrelay.topic import TopicSubscription
from redrelay.worker.topic_leases import (
    GroupLease,
    create_group,
    receive_ahead,
    send_ahead,
)


def _setup(relay: Relay, count: int) -> tuple[TopicSubscription, list[str]]:
    @relay.subscriber("t", group="g", start="beginning")
    def handler(message: Message) -> None:  # pragma: no cover - never run here
        pass

    (sub,) = relay.topic_subscribers
    ids = relay.topic("t").publish_many(list(range(count)))
    create_group(relay.connection, sub)
    return sub, ids


def _lease(relay: Relay, sub: TopicSubscription) -> GroupLease:
    lease = GroupLease(relay.connection, sub)
    lease.join()
    return lease


def _counters(relay: Relay) -> dict[str, int]:
    (group,) = relay.topic("t").stats().groups
    return group.counters


def _pending(relay: Relay, sub: TopicSubscription, consumer: str) -> list[str]:
    rows = relay.connection.client.xpending_range(
        sub.topic.keys.stream, "g", min="-", max="+", count=1000, consumername=consumer
    )
    return [row["message_id"].decode() for row in rows]


@pytest.mark.parametrize("held", [3, 300], ids=["one-read", "cut-short"])
def test_acks_with_a_fetch_settle_only_what_the_consumer_holds(
    relay: Relay, held: int
) -> None:
    sub, ids = _setup(relay, held + 2)
    mine, other = _lease(relay, sub), _lease(relay, sub)
    assert [i[0] for i in mine.fetch(held, [], False).items] == ids[:held]
    theirs = [i[0] for i in other.fetch(2, [], False).items]
    assert theirs == ids[held:]

    got = mine.fetch(10, [ids[0], ids[held - 1], *theirs], False)
    assert got.held == 2 and got.items == []
    counters = _counters(relay)
    assert counters["acked"] == 2 and counters["rejected"] == 2
    # the other consumer's entry is untouched: still its own, and its ack counts
    assert _pending(relay, sub, other.consumer_id) == theirs
    assert _pending(relay, sub, mine.consumer_id) == ids[1 : held - 1]
    assert other.fetch(10, theirs, False).held == 2
    assert _counters(relay)["acked"] == 4


def test_acks_of_a_batch_while_the_next_one_fetched_ahead_is_held(relay: Relay) -> None:
    sub, ids = _setup(relay, 10)
    lease = _lease(relay, sub)
    first = [i[0] for i in lease.fetch(5, [], False).items]
    ahead = lease.send_fetch(5, [])
    second = [i[0] for i in lease.receive(ahead).items]
    assert first + second == ids
    got = lease.fetch(5, first, False)  # the worker's next fetch, sent ahead in turn
    assert got.held == 5 and got.items == []
    assert _pending(relay, sub, lease.consumer_id) == second
    assert _counters(relay)["acked"] == 5
    assert _counters(relay).get("rejected", 0) == 0


def test_a_fetch_sent_ahead_whose_reply_is_lost_gives_its_acks_back(
    relay: Relay, redrelay_url: str
) -> None:
    """No reply (writes paused, the read times out): whether the script ran is unknown,
    so its acks go back in front of the next ones and the next fetch resyncs."""
    sub, ids = _setup(relay, 6)
    conn = relay.new_connection(socket_timeout=0.3)
    lease = GroupLease(conn, sub)
    lease.join()
    first = [i[0] for i in lease.fetch(3, [], False).items]
    admin = redis.Redis.from_url(redrelay_url)
    acks = first[:]
    try:
        admin.client_pause(60_000, all=False)  # writes (the fetch script) wait
        ahead, resync = send_ahead(lease, 3, acks)
        assert ahead is not None and not resync and acks == []
        later = ["0-1"]  # an ack collected meanwhile
        acks = later[:]
        with pytest.raises(RedrelayError):
            receive_ahead(lease, ahead, acks)
        assert acks == first + later
    finally:
        admin.client_unpause()
    got = lease.fetch(3, acks, True)
    # Whether the lost call ran or not: the first batch acked once ("0-1" is nobody's),
    # the next batch handed out (read now, or re-read from what this consumer holds).
    assert _counters(relay)["acked"] == 3
    assert [i[0] for i in got.items] == ids[3:]
    assert _pending(relay, sub, lease.consumer_id) == ids[3:]
    conn.close()
    admin.close()
