"""Running a relay's consumers and subscribers inside a web process (Flask, Django).

The web frameworks start it from their request path (Flask ``before_request``, Django
``request_started``), which runs only in processes that serve requests: never in the
autoreloader's parent, ``flask shell``/``manage.py shell``, ``migrate`` or the worker
commands. The first request waits (a few seconds at most) until the subscriptions are
in place, so a message that request publishes reaches this process's subscribers.

Each serving process runs its own copy: a queue's messages are shared among them, but
every process's channel subscribers get every message (four gunicorn workers: four
deliveries of each channel message). Once per process, and again in a forked child.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref

from ..relay import Relay

__all__ = ["start_in_process"]

log = logging.getLogger("redrelay.inprocess")

#: Seconds the first request waits for the consumers and subscriptions.
READY_WAIT = 5.0

_lock = threading.Lock()
#: relay -> the pid that started it (a forked child starts its own).
_started: weakref.WeakKeyDictionary[Relay, int] = weakref.WeakKeyDictionary()


def start_in_process(relay: Relay, *, setting: str, wait: float = READY_WAIT) -> bool:
    """Start ``relay`` on background threads of this process, once; wait until ready.

    :param setting: the setting that asked for it, named in log lines.
    :returns: whether this call started it.
    """
    pid = os.getpid()
    if _started.get(relay) == pid:
        return False
    with _lock:
        if _started.get(relay) == pid:
            return False
        _started[relay] = pid
    if not (
        relay.consumers
        or relay.subscribers
        or relay.topic_subscribers
        or len(relay.schedules)
    ):
        log.warning(
            "%s is on, but no consumer, subscriber or schedule is registered", setting
        )
        return False
    threading.Thread(
        target=_run, args=(relay, setting), name="redrelay-start", daemon=True
    ).start()
    atexit.register(_stop_at_exit, weakref.ref(relay))
    if relay.wait_ready(wait):
        log.info("%s: consumers and subscribers running in process %d", setting, pid)
    else:
        log.warning(
            "%s: consumers and subscribers not running after %g s (is Redis "
            "reachable?); they start when it answers",
            setting,
            wait,
        )
    return True


def _run(relay: Relay, setting: str) -> None:
    try:
        relay.start()  # waits for Redis as long as it takes
    except Exception:
        log.exception("%s: could not start the consumers and subscribers", setting)


def _stop_at_exit(ref: weakref.ReferenceType[Relay]) -> None:
    relay = ref()
    if relay is not None:
        relay.stop()
