"""Live updates: one overview snapshot per dashboard every ``interval`` seconds, shared by
every open page, pushed as server-sent events.

A thread takes the snapshot while at least one stream is open and stops when the last
one leaves, so an idle dashboard costs Redis nothing. A page that is hidden closes its
``EventSource`` (dashboard.js), which is how the updates pause.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson

from ..contrib.sse_frames import KEEPALIVE_FRAME

__all__ = ["Snapshots", "frame"]

log = logging.getLogger("redrelay.dashboard")


def frame(data: Any, event: str = "overview", event_id: int | None = None) -> bytes:
    """One SSE frame, as the project's event streams write them (contrib.sse_frames):
    JSON without a newline on one ``data:`` line, so no value can inject a frame."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class Snapshots:
    """The latest snapshot, refreshed every ``interval`` seconds while someone watches."""

    def __init__(self, take: Callable[[], Any], interval: float = 2.0) -> None:
        self.take = take
        self.interval = interval
        self._cond = threading.Condition()
        self._version = 0
        self._latest: Any = None
        self._watchers = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        """End every stream and the refreshing thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.interval + 5)

    def _run(self) -> None:
        while True:
            try:
                snap = self.take()
            except Exception:  # a Redis outage must not end the live view
                log.exception("dashboard snapshot failed; retrying")
                snap = None
            with self._cond:
                if snap is not None:
                    self._latest = snap
                    self._version += 1
                    self._cond.notify_all()
                self._cond.wait_for(lambda: self._closed, self.interval)
                if self._closed or self._watchers == 0:
                    self._thread = None
                    return

    def _watch(self) -> bool:
        """Count one more watcher (starting the thread); False once closed."""
        with self._cond:
            if self._closed:
                return False
            self._watchers += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="redrelay-dashboard-live", daemon=True
                )
                self._thread.start()
            return True

    async def astream(self, keepalive: float = 15.0) -> AsyncIterator[bytes]:
        """:meth:`stream` for an event loop: it looks for a new snapshot every 0.2 s (a
        read of two attributes, no Redis) instead of holding a thread while it waits."""
        if not self._watch():
            return
        try:
            yield b"retry: 2000\n\n"
            seen, idle = 0, 0.0
            while not self._closed:
                if self._version != seen:
                    with self._cond:
                        seen, snap = self._version, self._latest
                    yield frame(snap, event_id=seen)
                    idle = 0.0
                    continue
                await asyncio.sleep(0.2)
                idle += 0.2
                if idle >= keepalive:
                    yield KEEPALIVE_FRAME
                    idle = 0.0
        finally:
            with self._cond:
                self._watchers -= 1

    def stream(self, keepalive: float = 15.0) -> Iterator[bytes]:
        """SSE frames: ``retry:``, the latest snapshot, then each new one."""
        if not self._watch():
            return
        try:
            yield b"retry: 2000\n\n"
            seen = 0
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda last=seen: self._closed or self._version != last,  # type: ignore[misc]
                        keepalive,
                    )
                    if self._closed:
                        return
                    changed, seen, snap = (
                        self._version != seen,
                        self._version,
                        self._latest,
                    )
                yield frame(snap, event_id=seen) if changed else KEEPALIVE_FRAME
        finally:
            with self._cond:
                self._watchers -= 1
