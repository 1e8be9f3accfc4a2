"""Topic subscribers in real worker processes, SIGKILLed mid-run: no group loses anything."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redrelay import Relay

from ..processes import Worker, wait_for


class TopicWorker(Worker):
    """``python -m redrelay worker tests.apps.topic_app:relay`` as a real subprocess."""

    def __init__(self, url: str, namespace: str, lease: float, **settings: str) -> None:
        super().__init__(
            "tests.apps.topic_app:relay",
            url,
            env={"TEST_NAMESPACE": namespace, "TEST_LEASE": str(lease), **settings},
            name="topic-worker",
        )


@pytest.fixture
def start_topic_worker(
    redrelay_url: str, relay: Relay
) -> Iterator[Callable[..., TopicWorker]]:
    started: list[TopicWorker] = []

    def start(**options: Any) -> TopicWorker:
        options.setdefault("lease", 2.0)
        worker = TopicWorker(redrelay_url, relay.namespace, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _done(url: str, ns: str, group: str) -> list[int]:
    with redis.Redis.from_url(url) as client:
        return [int(x) for x in client.lrange(f"{ns}:test:topic:{group}", 0, -1)]


@pytest.mark.parametrize(
    ("handlers", "held"),
    [
        # 2 threads x prefetch 10 held per group and worker
        ({}, 20),
        # async def handlers: up to 20 coroutines per group on the worker's event loop,
        # fed by ceil(20 / 10) + 1 = 3 fetching threads x prefetch 10
        ({"TEST_ASYNC": "1", "TEST_CONCURRENCY": "20"}, 30),
    ],
    ids=["threads", "async"],
)
def test_sigkilled_topic_workers_lose_nothing_per_group(
    relay: Relay,
    redrelay_url: str,
    start_topic_worker: Callable[..., TopicWorker],
    handlers: dict[str, str],
    held: int,
) -> None:
    total = 3000
    relay.topic("events").publish_many([{"n": n} for n in range(total)])
    ns, rng = relay.namespace, random.Random(5)
    workers = [start_topic_worker(**handlers), start_topic_worker(**handlers)]
    kills = 0
    for round_ in range(4):
        # let the workers get going, then kill one mid-run and start a replacement
        target = len(_done(redrelay_url, ns, "billing")) + 150

        def progressed(target: int = target) -> bool:
            return len(_done(redrelay_url, ns, "billing")) >= target

        wait_for(progressed, timeout=60, what=f"progress in round {round_}")
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        kills += 1
        workers.append(start_topic_worker(**handlers))
    for group in ("billing", "mail"):

        def all_done(group: str = group) -> bool:
            return set(_done(redrelay_url, ns, group)) == set(range(total))

        wait_for(all_done, timeout=120, interval=0.2, what=f"all done in {group}")
    stats = {g.group: g for g in relay.topic("events").stats().groups}
    assert kills == 4
    # the killed workers held entries that went back to their group
    assert sum(g.counters.get("recovered", 0) for g in stats.values()) > 0
    for worker in workers:
        assert worker.close() == 0
    for group in ("billing", "mail"):
        done = _done(redrelay_url, ns, group)
        assert set(done) == set(range(total))  # none lost
        assert len(done) - total <= 4 * 2 * held  # duplicates: at most what was held
        stats = {g.group: g for g in relay.topic("events").stats().groups}
        assert stats[group].pending == 0 and stats[group].dead == 0
        # nothing was trimmed (the default retention is far above 3000 entries)
        assert stats[group].counters.get("trimmed_pending", 0) == 0
        assert stats[group].counters.get("trimmed_unread", 0) == 0


@pytest.mark.parametrize(
    "handlers", [{}, {"TEST_ASYNC": "1"}], ids=["threads", "async"]
)
def test_a_poison_entry_that_kills_its_workers_is_dead_lettered_in_its_group_only(
    relay: Relay,
    redrelay_url: str,
    start_topic_worker: Callable[..., TopicWorker],
    handlers: dict[str, str],
) -> None:
    total, ns = 200, relay.namespace
    topic = relay.topic("events")
    topic.publish_many([{"n": n} for n in range(100)])
    topic.publish({"n": 100, "die": True})  # kills every billing worker that runs it
    topic.publish_many([{"n": n} for n in range(101, total + 1)])
    options = {
        "TEST_MAX_DELIVERIES": "3",
        "TEST_CONCURRENCY": "1",
        "TEST_PREFETCH": "5",
        "TEST_GROUPS": "billing",
        **handlers,
    }
    worker = start_topic_worker(lease=1.0, **options)
    deaths = 0

    def settled() -> bool:
        nonlocal worker, deaths
        if not worker.alive():
            deaths += 1
            assert deaths <= 10, "the poison entry was never dead-lettered"
            worker = start_topic_worker(lease=1.0, **options)
        billing = set(_done(redrelay_url, ns, "billing"))
        return billing == set(range(total + 1)) - {100} and bool(
            topic.dead_letters("billing")
        )

    wait_for(settled, timeout=120, interval=0.1, what="poison dead-lettered")
    (letter,) = topic.dead_letters("billing")
    assert letter.body == {"n": 100, "die": True}
    assert "max_deliveries=3" in letter.reason
    # it killed max_deliveries workers, then was not run again; the entries fetched in
    # the same batches were not counted (they did not start), so none of them died
    assert deaths == 3
    assert worker.close() == 0
    assert [
        (g.group, g.counters.get("trimmed_pending", 0)) for g in topic.stats().groups
    ] == [("billing", 0)]
    # the other group still gets every entry, the poison included (it does not die there)
    mail = start_topic_worker(
        lease=1.0, TEST_GROUPS="mail", TEST_MAX_DELIVERIES="3", **handlers
    )
    wait_for(
        lambda: set(_done(redrelay_url, ns, "mail")) == set(range(total + 1)),
        timeout=60,
        what="mail got everything, poison included",
    )
    assert topic.dead_letters("mail") == []
    assert mail.close() == 0
