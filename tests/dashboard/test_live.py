"""The shared snapshot: one taker for every stream, none when nobody watches."""

from __future__ import annotations

import threading

from redrelay.dashboard.live import Snapshots

from ..processes import wait_for


def test_one_snapshot_thread_shared_and_stopped_when_nobody_watches() -> None:
    taken: list[int] = []
    snaps = Snapshots(lambda: taken.append(1) or len(taken), interval=0.05)
    a, b = snaps.stream(keepalive=0.5), snaps.stream(keepalive=0.5)
    assert next(a) == next(b) == b"retry: 2000\n\n"
    first_a, first_b = next(a), next(b)
    assert first_a.startswith(b"id: ") and first_b.startswith(b"id: ")
    takers = [t for t in threading.enumerate() if t.name == "redrelay-dashboard-live"]
    assert len(takers) == 1  # two streams, one snapshot thread
    # the streams see the same snapshots (same ids), never one per stream
    wait_for(lambda: len(taken) >= 3, timeout=5)
    a.close()
    b.close()
    wait_for(
        lambda: (
            not [
                t for t in threading.enumerate() if t.name == "redrelay-dashboard-live"
            ]
        ),
        timeout=5,
        what="the snapshot thread to stop with no watcher",
    )
    count = len(taken)
    threading.Event().wait(0.3)
    assert len(taken) == count  # an idle dashboard takes no snapshot
    snaps.close()
