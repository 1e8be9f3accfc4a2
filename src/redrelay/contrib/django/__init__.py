"""Django integration: an installed app that makes Redis the project's message broker.

Add ``"redrelay.contrib.django"`` to ``INSTALLED_APPS`` (and ``migrate`` for the outbox
table). Then:

- settings in ``REDRELAY = {"default": {"URL": ..., "NAMESPACE": ..., "OPTIONS": {...}}}``
  (see :mod:`redrelay.contrib.django.conf`);
- handlers in each app's ``consumers.py``, found at startup, declared with
  :func:`consumer`, :func:`subscriber` and :func:`periodic`;
- :func:`get_relay` for the relay of an alias (built lazily, rebuilt after a settings
  change);
- :func:`enqueue_on_commit`, :func:`publish_on_commit` (channels, and topics with
  ``topic=True``) and :func:`enqueue_task_on_commit` (``django.tasks``) to send only what
  a committed transaction decided, optionally through the outbox table;
- ``manage.py relay_worker``, ``relay_stats``, ``relay_dead``, ``relay_outbox``,
  ``relay_schedules``;
- system checks ``redrelay.E0xx``/``W0xx``; an SSE view (:mod:`.views`); a backend for
  Django's tasks framework (:mod:`.tasks`).

Importing this package does no I/O and reads no setting.
"""

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "redrelay.contrib.django needs Django: pip install 'redrelay[django]'"
    ) from exc

from ._task_commit import enqueue_task_on_commit as enqueue_task_on_commit
from .conf import InvalidRelaySettings as InvalidRelaySettings
from .outbox import enqueue_on_commit as enqueue_on_commit
from .outbox import flush_outbox as flush_outbox
from .outbox import publish_on_commit as publish_on_commit
from .relays import consumer as consumer
from .relays import get_relay as get_relay
from .relays import periodic as periodic
from .relays import subscriber as subscriber

__all__ = [
    "InvalidRelaySettings",
    "consumer",
    "enqueue_on_commit",
    "enqueue_task_on_commit",
    "flush_outbox",
    "get_relay",
    "periodic",
    "publish_on_commit",
    "subscriber",
]
