"""Issue 18: a handler that raises any BaseException fails its delivery, nothing more.

The issue's example, in a real worker process, on every kind of handler: one
``{"exit": true}`` message whose handler calls ``sys.exit(3)`` (or raises
``KeyboardInterrupt``), then five ordinary ones. All six are drained: the five run, the
exiting one is retried, then dead-lettered with its class and traceback, and logged at
ERROR; channel subscribers log it at ERROR and go on.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest
import redis

from redrelay import Message, QueueStats, Relay

from ..processes import Worker
from .helpers import wait_for

QUEUES = ["se", "ase"]
TOPICS = {"events": "topic", "aevents": "atopic"}
CHANNELS = ["chan", "achan"]


class ExitWorker(Worker):
    """``python -m redrelay worker tests.apps.exit_app:relay`` as a real subprocess."""

    def __init__(self, url: str, namespace: str, raise_: str) -> None:
        super().__init__(
            "tests.apps.exit_app:relay",
            url,
            env={"TEST_NAMESPACE": namespace, "TEST_RAISE": raise_},
            name="exit-worker",
        )


@pytest.fixture
def exit_worker(
    redrelay_url: str, make_relay: Callable[..., Relay]
) -> Iterator[Callable[[str], tuple[Relay, ExitWorker]]]:
    started: list[ExitWorker] = []

    def start(raise_: str) -> tuple[Relay, ExitWorker]:
        relay = make_relay()
        worker = ExitWorker(redrelay_url, relay.namespace, raise_)
        started.append(worker)
        return relay, worker

    yield start
    for worker in started:
        worker.close()


@pytest.mark.parametrize("raise_", ["SystemExit", "KeyboardInterrupt"])
def test_the_issue_example_drains_on_every_kind_of_handler(
    exit_worker: Callable[[str], tuple[Relay, ExitWorker]],
    redrelay_url: str,
    raise_: str,
) -> None:
    relay, worker = exit_worker(raise_)
    client = redis.Redis.from_url(redrelay_url)
    ns = relay.namespace
    bodies = [{"exit": True}] + [{"n": n} for n in range(5)]
    for name in QUEUES:
        for body in bodies:
            relay.queue(name).put(body)
    for topic in TOPICS:
        relay.topic(topic).publish_many(bodies)
    for channel in CHANNELS:  # published once the worker listens
        wait_for(
            lambda c=channel: relay.publish(c, {"probe": True}) > 0,
            timeout=30,
            what=f"the subscriber of {channel}",
        )
        for body in bodies:
            relay.publish(channel, body)

    kinds = QUEUES + list(TOPICS.values()) + CHANNELS

    def counts() -> dict[str, int]:
        return {k: int(client.get(f"{ns}:test:count:{k}") or 0) for k in kinds}

    wait_for(lambda: all(v == 5 for v in counts().values()), timeout=30, what=counts)
    for name in QUEUES:
        # the handlers counted before their acks: wait for those too
        wait_for(
            lambda n=name: _settled(relay.queue(n).stats()),
            what=f"{name}: one dead, the rest acked",
        )
        stats = relay.queue(name).stats()
        assert (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)
        assert stats.counters.get("retried") == 1  # retries=1, then the dead letter
        (dead,) = relay.queue(name).dead_letters()
        assert raise_ in dead.reason
        assert dead.traceback is not None and raise_ in dead.traceback
        assert "_exit" in dead.traceback  # the handler's own frames
    for topic, group in TOPICS.items():
        wait_for(
            lambda t=topic, g=group: len(relay.topic(t).dead_letters(g)) == 1,
            what=f"{topic} dead letter",
        )
        (dead,) = relay.topic(topic).dead_letters(group)
        assert raise_ in dead.reason and raise_ in (dead.traceback or "")
    names = ["queue se", "queue ase", "topic events/topic", "topic aevents/atopic"]

    def logged() -> bool:  # a dead letter is logged just after it is stored
        lines = worker.output().splitlines()
        return all(
            any("ERROR" in x and n in x and "dead-lettered" in x for x in lines)
            for n in names
        ) and all(
            any("ERROR" in x and f"channel {c}" in x and raise_ in x for x in lines)
            for c in CHANNELS
        )

    wait_for(logged, what="an ERROR line per dead letter and channel failure")
    log = worker.output()
    assert worker.proc.poll() is None  # the worker lives on
    assert "ready" in log  # lifecycle lines at INFO, shown by default
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0


def test_an_async_handler_that_raises_cancelled_error_fails_its_delivery(
    make_relay: Callable[..., Relay],
) -> None:
    """A CancelledError the handler raises itself is its failure (the worker's own
    cancellation at shutdown is not): else the delivery would sit in flight forever."""
    import asyncio

    from redrelay.worker.runner import Runner

    relay = make_relay()

    @relay.consumer("cancelled", retries=0)
    async def handler(message: Message) -> None:
        raise asyncio.CancelledError("by the handler")

    relay.queue("cancelled").put(1)
    runner = Runner(relay, subscribers=False, poll=0.05)
    runner.start()
    try:
        wait_for(lambda: relay.queue("cancelled").stats().dead == 1, what="dead")
    finally:
        runner.stop(grace=5)
    (dead,) = relay.queue("cancelled").dead_letters()
    assert "CancelledError" in dead.reason


def _settled(stats: QueueStats) -> bool:
    return stats.dead == 1 and (stats.ready, stats.delayed, stats.in_flight) == (
        0,
        0,
        0,
    )
