"""The one Redis client per URL that the test apps' handlers record with."""

from __future__ import annotations

import os
import threading

import redis

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def client_of(variable: str) -> redis.Redis:
    """The client of the URL in environment ``variable``, made once per process.

    Under a lock: two handler threads that each made one (``if _client is None``) let
    the first be dropped and garbage-collected, which closed its connection under the
    thread still reading from it (EBADF; a message of the rate test was dead-lettered).
    """
    url = os.environ[variable]
    with _lock:
        found = _clients.get(url)
        if found is None:
            found = _clients[url] = redis.Redis.from_url(url)
        return found
