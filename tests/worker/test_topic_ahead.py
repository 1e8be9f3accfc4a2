"""The fetch a topic subscriber sends ahead (before it runs the batch in hand): what it
took is held in the group under the thread's lease, so a worker SIGKILLed mid-drain
loses none of it."""

from __future__ import annotations

from collections.abc import Callable

import redis

from redrelay import Relay

from ..processes import wait_for
from . import test_topic_crash
from .test_topic_crash import TopicWorker, _done

#: The fixture of test_topic_crash (lease given here per worker).
start_topic_worker = test_topic_crash.start_topic_worker


def test_a_killed_workers_batch_fetched_ahead_goes_back_to_the_group(
    relay: Relay,
    redrelay_url: str,
    start_topic_worker: Callable[..., TopicWorker],
) -> None:
    total, ns = 400, relay.namespace
    topic = relay.topic("events")
    topic.publish_many([{"n": n} for n in range(total)])
    stream = topic.keys.stream
    client = redis.Redis.from_url(redrelay_url)
    number = {sid: n for n, (sid, _) in enumerate(client.xrange(stream))}
    # one thread, batches of 5 quick handlers: the next fetch goes out before each batch
    options = {"TEST_GROUPS": "billing", "TEST_CONCURRENCY": "1", "TEST_PREFETCH": "5"}
    first = start_topic_worker(lease=1.0, TEST_HOLD_AHEAD="1", **options)
    # a handler (entry >= 100) blocks once its consumer holds a batch fetched ahead
    held = int(
        wait_for(
            lambda: client.get(f"{ns}:test:held"),
            timeout=60,
            what="a handler holding while its thread has a batch fetched ahead",
        )
    )
    pending = [
        number[p["message_id"]]
        for p in client.xpending_range(stream, "billing", "-", "+", 1000)
    ]
    done = set(_done(redrelay_url, ns, "billing"))
    # the fetched-ahead entries are pending in the group, not handled
    ahead = [n for n in pending if n > held]
    assert len(ahead) >= 5 and not done & set(ahead)
    first.kill()
    second = start_topic_worker(lease=1.0, **options)
    wait_for(
        lambda: set(_done(redrelay_url, ns, "billing")) == set(range(total)),
        timeout=90,
        interval=0.1,
        what="every entry done after the kill",
    )
    (stats,) = topic.stats().groups
    # everything the killed consumer held went back: its batch and the one fetched ahead
    assert stats.counters.get("recovered", 0) == len(pending)
    assert stats.pending == 0 and stats.dead == 0
    assert second.close() == 0
    # duplicates: exactly what the killed worker had handled and not acked yet
    duplicates = len(_done(redrelay_url, ns, "billing")) - total
    assert duplicates == len(done & set(pending))
    client.close()
