"""Sharing a test's database connections with the handlers that ``relay.drain()`` runs.

A Django ``TestCase`` runs each test inside a transaction that is never committed, on
the test thread's connection. ``drain()`` runs handlers on worker threads, whose own
connections cannot see that data (and, on SQLite's shared in-memory test database, hit
"database table is locked"). So while a drain is called from inside a transaction, the
handler threads use the caller's connections, one handler at a time, as Django's
``LiveServerTestCase`` does for its server thread (issue 16).

The state is process-wide on purpose: it exists only for the duration of a drain called
in a transaction, which is a test's doing; a worker never enters it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from django.db import connections

__all__ = ["drain_shares_connections", "shared_connections"]

_lock = threading.Lock()
#: alias -> the drain caller's connection, while such a drain runs.
_shared: dict[str, Any] | None = None


@contextlib.contextmanager
def drain_shares_connections() -> Iterator[None]:
    """Drain context: share the calling thread's open transactions with handler threads."""
    global _shared
    mine = {
        c.alias: c for c in connections.all(initialized_only=True) if c.in_atomic_block
    }
    if not mine:
        yield
        return
    for connection in mine.values():
        connection.inc_thread_sharing()
    _shared = mine
    try:
        yield
    finally:
        _shared = None
        for connection in mine.values():
            connection.dec_thread_sharing()


@contextlib.contextmanager
def shared_connections() -> Iterator[bool]:
    """In a handler thread: use the drain caller's connections if it shares them.

    Yields whether it did (then the caller must not close connections). Handlers take
    turns: one connection must not run two queries at once.
    """
    shared = _shared
    if shared is None:
        yield False
        return
    with _lock:
        # The drain's own thread (channel subscribers run there) keeps its connections.
        lent = [a for a, c in shared.items() if connections[a] is not c]
        for alias in lent:
            connections[alias] = shared[alias]
        try:
            yield True
        finally:
            for alias in lent:
                del connections[alias]
