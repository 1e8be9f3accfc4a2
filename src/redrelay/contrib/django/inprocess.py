"""``START_IN_PROCESS``: run an alias's consumers and subscribers in the web process.

Connected to ``request_started`` by the app config: that signal is sent only by
processes that serve requests (``runserver``'s child, gunicorn/uvicorn workers), never
by the autoreloader's parent, ``manage.py shell``, ``migrate`` or ``relay_worker``. The
first request of each process starts them and waits (5 s at most) until the
subscriptions are in place; later requests cost one dict lookup per alias. See
:mod:`redrelay.contrib._inprocess`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings

from .._inprocess import start_in_process
from .relays import get_relay

__all__ = ["start_on_request"]

_lock = threading.Lock()
#: alias -> pid whose outbox relay runs (one per process).
_outboxes: dict[str, int] = {}


def start_on_request(sender: Any = None, **kwargs: Any) -> None:
    """``request_started`` receiver: start every alias with ``START_IN_PROCESS``."""
    raw = getattr(settings, "REDRELAY", None)
    if not isinstance(raw, dict):
        return
    for alias, config in raw.items():
        if isinstance(config, dict) and config.get("START_IN_PROCESS") is True:
            start_in_process(
                get_relay(str(alias)),
                setting=f"REDRELAY[{alias!r}]['START_IN_PROCESS']",
            )
            if config.get("OUTBOX") is True:
                _start_outbox(str(alias), config)


def _start_outbox(alias: str, config: dict[str, Any]) -> None:
    """The outbox relay of ``alias`` in this process, as ``relay_worker`` runs it."""
    pid = os.getpid()
    with _lock:
        if _outboxes.get(alias) == pid:
            return
        _outboxes[alias] = pid
    from .outbox import OutboxRelay

    OutboxRelay(
        [alias],
        poll=float(config.get("OUTBOX_POLL", 0.5)),
        batch=int(config.get("OUTBOX_BATCH", 100)),
    ).start()
