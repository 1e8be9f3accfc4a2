"""``django.tasks`` tasks sent when the transaction commits, optionally through the outbox.

Django's tasks framework enqueues at once, inside or outside a transaction; its
documentation (topics/tasks, "Transactions") tells callers to wrap the enqueue in
``transaction.on_commit(partial(task.enqueue, ...))`` so that a worker never runs a
task about rows it cannot see yet. That works with :class:`RedRelayBackend` as is.
:func:`enqueue_task_on_commit` does the same in one call, returns the result (its id is
known before the commit, so it can be stored in the same transaction) and, with the
outbox, keeps the task through a Redis outage at commit time.

Importing this module does not import the tasks framework; calling it does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import get_random_string

from ...errors import ConfigurationError, RedrelayError
from ._tasks_queues import _backends
from .relays import get_relay

if TYPE_CHECKING:
    from .tasks import RedRelayBackend

__all__ = ["enqueue_task_on_commit", "send_task"]

log = logging.getLogger("redrelay.django.tasks")


def enqueue_task_on_commit(
    task: Any,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    outbox: bool | None = None,
    using: str | None = None,
) -> Any:
    """Enqueue a ``django.tasks`` task once the current transaction commits.

    A rolled-back transaction enqueues nothing; outside a transaction it is sent at
    once. The task is validated and its arguments encoded now, so bad input fails in
    the caller. The returned ``TaskResult`` is ``READY`` with its final ``id``; its
    record exists in Redis once the task was sent (``refresh()`` before that raises
    ``TaskResultDoesNotExist``).

    Example::

        with transaction.atomic():
            order = Order.objects.create(...)
            result = enqueue_task_on_commit(send_receipt, [order.pk], outbox=True)
            order.receipt_task = result.id
            order.save()

    :param task: a task of a ``TASKS`` alias whose backend is ``RedRelayBackend``.
    :param args: positional arguments of the task (JSON values).
    :param kwargs: keyword arguments of the task (JSON values).
    :param outbox: write an outbox row in the transaction, sent by ``relay_worker``
        if Redis is down at commit time (default: the ``OUTBOX`` setting of the
        backend's ``RELAY`` alias).
    :param using: the database alias whose transaction counts.
    :raises ConfigurationError: the task's backend is not a ``RedRelayBackend``.
    :raises EncodeError: an argument is not a JSON value; nothing was written.
    """
    from .outbox import _send_now, _use_outbox, _write_row
    from .tasks import RedRelayBackend

    backend = _backends()[task.backend]
    if not isinstance(backend, RedRelayBackend):
        raise ConfigurationError(
            f"enqueue_task_on_commit needs a RedRelayBackend; TASKS[{task.backend!r}] "
            f"is a {type(backend).__name__}. Use transaction.on_commit(partial("
            "task.enqueue, ...)) for other backends."
        )
    backend.validate_task(task)
    # Random, as task.enqueue()'s: apps put result ids in URLs (issue 18).
    result_id = get_random_string(32)
    body = {
        "id": result_id,
        "task": task.module_path,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "queue_name": task.queue_name,
        "priority": task.priority,
    }
    alias = backend.config.relay
    relay = get_relay(alias)
    relay.queue(backend.queue_for(task.queue_name)).encode(body)  # fail now
    eta: datetime | None = task.run_after
    if _use_outbox(outbox, alias):
        row = _write_row(
            alias, "task", backend.alias, body, None, eta, None, using=using
        )
        transaction.on_commit(lambda: _send_now(relay, row.pk, using), using=using)
    else:

        def send() -> None:
            try:
                send_task(backend.alias, body, eta)
            except RedrelayError as exc:
                log.error(
                    "could not enqueue task %s (%s) after the commit: %s; it is lost "
                    "(enable the outbox, REDRELAY[%r]['OUTBOX'] = True, to keep it)",
                    task.module_path,
                    result_id,
                    exc,
                    alias,
                )

        transaction.on_commit(send, using=using)
    return _ready_result(backend, task, result_id, body, enqueued_at=None)


def send_task(
    task_alias: str,
    body: dict[str, Any],
    eta: datetime | None,
    *,
    dedup_key: str | None = None,
) -> None:
    """Store the ``READY`` record of a task decided earlier, then put its message.

    The record is written only if absent, so a row sent twice never turns a finished
    result back to ``READY``; ``dedup_key`` keeps the message from being put twice.

    :raises RedrelayError: Redis refused, or the task cannot be loaded any more.
    """
    from .tasks import RedRelayBackend, _result_key

    framework = _tasks()
    backend = _backends()[task_alias]
    if not isinstance(backend, RedRelayBackend):
        raise ConfigurationError(
            f"TASKS[{task_alias!r}] is no longer a RedRelayBackend"
        )
    try:
        task = backend._task(body["task"], body["id"])
    except (ImportError, TypeError, SuspiciousOperation) as exc:
        raise ConfigurationError(
            f"task {body['task']!r} cannot be loaded ({exc})"
        ) from exc
    queue_name = body.get("queue_name") or task.queue_name
    priority = int(body.get("priority") or 0)
    changes: dict[str, Any] = {}
    if queue_name != task.queue_name:
        changes["queue_name"] = queue_name
    if priority != task.priority:
        changes["priority"] = priority
    if eta is not None:
        changes["run_after"] = eta
    if changes:
        task = task.using(**changes)
    result = _ready_result(backend, task, body["id"], body, enqueued_at=timezone.now())
    relay = get_relay(backend.config.relay)
    queue = backend.queue_for(queue_name)
    # A row sent again after a crash finds the first send's record (perhaps finished
    # by now) and leaves it; the check and the write are not atomic, which only matters
    # if two relays send the same row at the same instant (rows are locked for that).
    if not relay.connection.call(
        "HEXISTS", _result_key(relay.namespace, queue, body["id"]), "m"
    ):
        extra = 0.0
        if eta is not None:
            extra = max(0.0, (eta - timezone.now()).total_seconds())
        backend._save(relay, backend._record(result), extra)
    message = {k: body[k] for k in ("id", "task", "args", "kwargs")}
    relay.queue(queue).put(message, eta=eta, dedup_key=dedup_key, priority=priority)
    framework.task_enqueued.send(type(backend), task_result=result)


def _tasks() -> Any:
    """The backend module, whose names come from ``django.tasks`` or the backport."""
    from . import tasks

    return tasks


def _ready_result(
    backend: RedRelayBackend,
    task: Any,
    result_id: str,
    body: dict[str, Any],
    *,
    enqueued_at: datetime | None,
) -> Any:
    framework = _tasks()
    return framework.TaskResult(
        task=task,
        id=result_id,
        status=framework.TaskResultStatus("READY"),
        enqueued_at=enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=list(body["args"]),
        kwargs=dict(body["kwargs"]),
        backend=backend.alias,
        errors=[],
        worker_ids=[],
    )
