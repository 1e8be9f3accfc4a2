"""The batch size adapts to the handlers when ``prefetch`` is left unset."""

from __future__ import annotations

import threading

from redrelay import Relay
from redrelay.worker.fetcher import AUTO_MAX, Fetcher
from redrelay.worker.leases import Batch, Lease
from redrelay.worker.timelimit import Slot


def _fetcher(relay: Relay, **options: object) -> Fetcher:
    relay.consumer("q", **options)(lambda message: None)
    consumer = relay.consumers["q"]
    lease = Lease(relay.connection, relay.queue("q").keys, consumer.options)
    return Fetcher(
        lease, Slot(consumer, lease), threading.Event(), 0.1, lambda *a: None
    )


def _batch(n: int) -> Batch:
    return Batch(1, [f"c:{i}" for i in range(n)], [b""] * n)


def test_quick_full_batches_grow_the_batch_slow_ones_shrink_it(relay: Relay) -> None:
    fetcher = _fetcher(relay)
    assert fetcher.prefetch == 50
    sizes = []
    for _ in range(6):
        fetcher.ran(_batch(fetcher.prefetch), 0.001)
        sizes.append(fetcher.prefetch)
    assert sizes == [100, 200, AUTO_MAX, AUTO_MAX, AUTO_MAX, AUTO_MAX]
    fetcher.ran(_batch(10), 0.001)  # a partial batch (the queue ran dry): no change
    assert fetcher.prefetch == AUTO_MAX
    for _ in range(12):
        fetcher.ran(_batch(fetcher.prefetch), 2.0)
    assert fetcher.prefetch == 1
    fetcher.ran(_batch(1), 0.2)  # neither quick nor slow: it stays
    assert fetcher.prefetch == 1


def test_an_explicit_prefetch_is_kept(relay: Relay) -> None:
    fetcher = _fetcher(relay, prefetch=50)
    fetcher.ran(_batch(50), 0.001)
    fetcher.ran(_batch(50), 5.0)
    assert fetcher.prefetch == 50


def test_a_concurrency_limit_fetches_one_at_a_time(relay: Relay) -> None:
    fetcher = _fetcher(relay, concurrency_limit=3)
    fetcher.ran(_batch(1), 0.001)
    assert fetcher.prefetch == 1
