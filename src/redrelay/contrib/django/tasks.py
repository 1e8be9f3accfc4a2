"""A backend for Django's tasks framework (``django.tasks``) on redrelay queues.

``django.tasks`` (Django >= 6.0) defines tasks and their results; this backend runs them
on the redrelay worker. On Django 5.x it uses the ``django-tasks`` backport (add
``"django_tasks"`` to ``INSTALLED_APPS`` there)::

    TASKS = {
        "default": {
            "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {
                "RELAY": "default",          # the REDRELAY alias
                "QUEUE_PREFIX": "tasks.",    # task queue "emails" -> redrelay queue "tasks.emails"
                "RESULT_TTL": 86400,         # seconds results are kept; None keeps them
                "CONSUMER": {"concurrency": 4, "lease": 30},
            },
        }
    }

How it works:

- ``task.enqueue(*args, **kwargs)`` writes the result record (``READY``, a random id) to
  Redis, then puts ``{"id", "backend", "task", "args", "kwargs"}`` on the queue
  ``<QUEUE_PREFIX><queue_name>`` (``run_after``: the message's ``eta``). Arguments and
  return values follow Django's JSON normalisation, as in the reference backends.
- ``manage.py relay_worker`` consumes every queue in ``QUEUES`` (``[]``: ``default`` and
  the task queues that exist when it starts; see :mod:`._tasks_queues`). It marks the
  record ``RUNNING``, runs the task, and stores ``SUCCESSFUL`` with the return value, or
  ``FAILED`` with the class and traceback of whatever it raised (``SystemExit`` too:
  :func:`redrelay.handlers.call_handler`). A task that raises is not retried
  (``django.tasks`` has no retries); a worker that dies mid-task hands it to another
  worker under redrelay's lease rule, and ``result.attempts`` counts the runs. A
  delivery of a task whose record is already finished is acknowledged without running it
  again.
- ``backend.get_result(id)`` reads the record: status, return value, errors, timestamps,
  worker ids. Records expire ``RESULT_TTL`` seconds after their last change (plus any
  ``run_after`` delay), so memory stays bounded.
- Records are redrelay's result records (docs/results.md): the queue's ``job:<id>`` hash,
  with the ``TaskResult`` as JSON in field ``m`` and the state and value that
  ``queue.result(id)``/``status(id)`` and their waiters read (a finished task is
  announced to them). The backend writes them itself, not in the ack script:
  ``django.tasks`` keeps a failed task as a result (no retry, no dead letter).

**Priority** is supported with Django's semantics: ``priority`` from -100 to 100, higher
runs sooner, FIFO among equals, strict within one queue (a task's retries and a
recovered task keep their priority; see docs/flow-control.md). ``CONSUMER`` options default to ``prefetch=1`` (tasks are usually slow; one
thread should not hold a batch that others could start). ``retries`` is not an option.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Iterable
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from django.core import checks
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string

from ...errors import RedrelayError, Reject
from ...failures import report_handled
from ...handlers import call_handler
from ...message import Message
from ...protocol.keys import QueueKeys
from ...relay import Relay
from ._tasks_conf import TasksSettings, problems, tasks_settings
from ._tasks_queues import consume_open_queues as consume_open_queues
from ._tasks_queues import register_consumers as register_consumers
from ._tasks_queues import shared_queues, task_queues
from .conf import DEFAULT_ALIAS
from .relays import get_relay

if TYPE_CHECKING:
    from django_tasks import TaskResultStatus
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        Task,
        TaskContext,
        TaskError,
        TaskResult,
    )
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
else:
    try:  # Django >= 6.0
        from django.tasks import TaskResultStatus
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import (
            Task,
            TaskContext,
            TaskError,
            TaskResult,
        )
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
    except ImportError:  # the django-tasks backport
        try:
            from django_tasks import TaskResultStatus
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import (
                Task,
                TaskContext,
                TaskError,
                TaskResult,
            )
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued, task_finished, task_started
            from django_tasks.utils import normalize_json
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedRelayBackend needs django.tasks (Django >= 6.0) or the django-tasks "
                "backport: pip install 'redrelay[django]'"
            ) from exc

__all__ = ["RedRelayBackend", "consume_open_queues", "register_consumers"]

T = TypeVar("T")

_FINISHED = ("SUCCESSFUL", "FAILED")


def _result_key(namespace: str, queue: str, result_id: str) -> str:
    # The record of redrelay's results (docs/results.md), under the queue's hash tag:
    # queue.result(id), queue.status(id) and their waiters read Django tasks too.
    return QueueKeys.of(namespace, queue).job(result_id)


def _dumps(value: Any) -> bytes:
    # Django's JSON normalisation keeps int keys ({1: "a"}); JSON makes them strings.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _state(record: dict[str, Any]) -> list[Any]:
    """The fields that redrelay's results read (``s`` and ``v``) for a Django record."""
    status = record["status"]
    if status == "SUCCESSFUL":
        return ["s", "ok", "v", b"j" + _dumps(record.get("return_value"))]
    if status == "FAILED":
        error = (record.get("errors") or [{}])[-1]
        failure = {
            "type": error.get("exception_class_path", "builtins.Exception"),
            "message": error.get("message", ""),
            "traceback": error.get("traceback"),
            "reason": "the task raised",
        }
        return ["s", "fail", "v", orjson.dumps(failure)]
    return ["s", "r" if status == "RUNNING" else "q", "v", ""]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class RedRelayBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on redrelay queues; see the module docstring.

    ``supports_defer`` (``run_after``), ``supports_async_task`` and
    ``supports_get_result`` and ``supports_priority`` are true.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._params = params
        self._config: TasksSettings | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"[-64:]

    @property
    def config(self) -> TasksSettings:
        """The backend's validated settings.

        :raises InvalidRelaySettings: they are invalid (``check()`` lists every problem).
        """
        if self._config is None:
            self._config = tasks_settings(self.alias, self._params)
        return self._config

    # -- producing -------------------------------------------------------------------------

    def queue_for(self, queue_name: str) -> str:
        """The redrelay queue of a task queue: ``<QUEUE_PREFIX><queue_name>``."""
        return f"{self.config.prefix}{queue_name}"

    def enqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        """Store a ``READY`` record and put the task on its queue.

        :raises BrokerUnavailable: Redis did not answer; the task was not enqueued.
        """
        self.validate_task(task)
        result: TaskResult[T] = TaskResult(
            task=task,
            # Random, as the reference backends': apps put result ids in URLs, and a
            # time-sortable id would reveal its neighbours (issue 18).
            id=get_random_string(32),
            status=TaskResultStatus("READY"),
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        relay = get_relay(self.config.relay)
        record = self._record(result)
        extra_ttl = 0.0
        if task.run_after is not None:
            extra_ttl = max(0.0, (task.run_after - timezone.now()).total_seconds())
        # The record first: a worker that gets the message always finds it.
        self._save(relay, record, extra_ttl)
        try:
            relay.queue(self.queue_for(task.queue_name)).put(
                {
                    "id": result.id,
                    "backend": self.alias,
                    "task": task.module_path,
                    "args": result.args,
                    "kwargs": result.kwargs,
                },
                eta=task.run_after,
                priority=task.priority,
            )
        except RedrelayError:
            try:
                key = _result_key(relay.namespace, self._queue_of(record), result.id)
                relay.connection.call("DEL", key)
            except RedrelayError:
                pass  # it expires
            raise
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The result of a task, read from Redis.

        :raises TaskResultDoesNotExist: no such id, or its record expired
            (``RESULT_TTL``).
        :raises ImportError: its task path no longer imports (as the reference backends).
        :raises SuspiciousOperation: its task path names something that is not a task.
        """
        relay = get_relay(self.config.relay)
        record = self._load(relay, result_id)
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return self._result(self._task(record["task"], result_id), record)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """``redrelay.E011`` for each problem with the backend's settings."""
        from django.apps import apps
        from django.conf import settings

        params = {"OPTIONS": self.options, "QUEUES": sorted(self.queues)}
        found = list(problems(params))
        if not apps.is_installed("redrelay.contrib.django"):
            found.append(
                "'redrelay.contrib.django' is not in INSTALLED_APPS, so relay_worker "
                "does not exist"
            )
        relay = self.options.get("RELAY", DEFAULT_ALIAS)
        aliases = getattr(settings, "REDRELAY", None) or {DEFAULT_ALIAS: {}}
        if isinstance(aliases, dict) and relay not in aliases:
            found.append(f"OPTIONS['RELAY'] names {relay!r}, not a REDRELAY alias")
        for problem in found:
            yield checks.Error(
                f"TASKS[{self.alias!r}]: {problem}.",
                hint="See redrelay.contrib.django.tasks for the backend's settings.",
                id="redrelay.E011",
            )
        if not found:
            yield from shared_queues(self, getattr(settings, "TASKS", None))

    # -- running (in the worker) -----------------------------------------------------------

    def run(self, message: Message) -> None:
        """Run the task of one message and store its result; the worker calls this.

        Never raises for what the task did: a failed task is a ``FAILED`` result, not a
        redrelay retry. A message that is not a task is dead-lettered.
        """
        body = message.body
        if not (
            isinstance(body, dict)
            and isinstance(body.get("id"), str)
            and isinstance(body.get("task"), str)
        ):
            raise Reject(
                "not a task message (expected {'id', 'task', 'args', 'kwargs'})"
            )
        relay = get_relay(self.config.relay)
        record = self._load(relay, body["id"], message.queue) or self._record_from(
            body, message
        )
        if record["status"] in _FINISHED:
            return  # a redelivery after the result was stored: do not run it twice
        now = timezone.now()
        record.update(
            status="RUNNING",
            started_at=record.get("started_at") or _iso(now),
            last_attempted_at=_iso(now),
            worker_ids=[*record.get("worker_ids", []), self.worker_id],
        )
        try:
            task = self._task(body["task"], body["id"])
        except (ImportError, SuspiciousOperation) as exc:
            self._finish(relay, record, exc)  # no task object: no signals
            report_handled(relay, f"task {body['task']}", message, exc)
            return
        self._save(relay, record)
        result = self._result(task, record)
        task_started.send(type(self), task_result=result)
        # The worker's own path for handlers: a task that calls sys.exit() (any
        # BaseException) is FAILED with that class, never left RUNNING (issue 18).
        _, error = call_handler(lambda _: self._call(task, result, record), message, ())
        self._finish(relay, record, error)
        finished = self._result(task, record)
        if error is None:
            task_finished.send(type(self), task_result=finished)
            return
        report_handled(relay, f"task {body['task']}", message, error)
        # django.tasks' own receiver logs a FAILED result with logger.exception, as
        # the reference backends send it inside their except block: so do we, or the
        # log line says "NoneType: None" instead of the task's traceback.
        try:
            raise error
        except BaseException:
            task_finished.send(type(self), task_result=finished)

    def _call(self, task: Task[Any, Any], result: Any, record: dict[str, Any]) -> None:
        args, kwargs = record.get("args", []), record.get("kwargs", {})
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        # Django's own rules (bytes become str, tuples lists ...), as the reference
        # backends; what it refuses fails the task with its TypeError or ValueError.
        record["return_value"] = normalize_json(value)

    def _finish(
        self, relay: Relay, record: dict[str, Any], exc: BaseException | None
    ) -> None:
        record["finished_at"] = _iso(timezone.now())
        if exc is None:
            record["status"] = "SUCCESSFUL"
        else:
            record["status"] = "FAILED"
            record.pop("return_value", None)
            kind = type(exc)
            record["errors"] = [
                *record.get("errors", []),
                {
                    "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
                    "message": str(exc),
                    "traceback": "".join(traceback.format_exception(exc)),
                },
            ]
        self._save(relay, record)

    # -- records ---------------------------------------------------------------------------

    def _task(self, path: str, result_id: str) -> Task[Any, Any]:
        """The task at ``path``; the exceptions of the reference backends otherwise."""
        task = import_string(path)  # ImportError
        if not isinstance(task, Task):
            raise SuspiciousOperation(
                f"Task {result_id} does not point to a Task ({path})"
            )
        return task

    def _record(self, result: TaskResult[Any]) -> dict[str, Any]:
        task = result.task
        return {
            "id": result.id,
            "task": task.module_path,
            "backend": self.alias,
            "queue_name": task.queue_name,
            "run_after": _iso(task.run_after),
            "args": result.args,
            "kwargs": result.kwargs,
            "status": "READY",
            "enqueued_at": _iso(result.enqueued_at),
            "started_at": None,
            "last_attempted_at": None,
            "finished_at": None,
            "errors": [],
            "worker_ids": [],
        }

    def _record_from(self, body: dict[str, Any], message: Message) -> dict[str, Any]:
        """A record rebuilt from the message, when the stored one expired."""
        enqueued = datetime.fromtimestamp(message.enqueued_at, tz=dt_timezone.utc)
        return {
            "id": body["id"],
            "task": body["task"],
            "backend": self.alias,
            "queue_name": (message.queue or "").removeprefix(self.config.prefix),
            "run_after": None,
            "args": body.get("args", []),
            "kwargs": body.get("kwargs", {}),
            "status": "READY",
            "enqueued_at": _iso(enqueued),
            "started_at": None,
            "last_attempted_at": None,
            "finished_at": None,
            "errors": [],
            "worker_ids": [],
        }

    def _queue_of(self, record: dict[str, Any]) -> str:
        return self.queue_for(record.get("queue_name") or "default")

    def _save(
        self, relay: Relay, record: dict[str, Any], extra_ttl: float = 0.0
    ) -> None:
        """Write the record (field ``m``) with the state redrelay's results read, expire it,
        and announce a finished task to waiters, in one transaction."""
        keys = QueueKeys.of(relay.namespace, self._queue_of(record))
        key = keys.job(record["id"])
        commands: list[tuple[Any, ...]] = [
            ("HSET", key, "m", _dumps(record), *_state(record))
        ]
        if self.config.result_ttl is None:
            commands.append(("PERSIST", key))
        else:
            commands.append(("EXPIRE", key, self.config.result_ttl + int(extra_ttl)))
        if record["status"] in _FINISHED:
            commands.append(("PUBLISH", keys.done, record["id"]))
        relay.connection.pipeline(commands, transaction=True)

    def _load(
        self, relay: Relay, result_id: str, queue: str | None = None
    ) -> dict[str, Any] | None:
        """The record of ``result_id``: in ``queue``, else looked for in every queue of
        the backend (the id does not name its queue; a few HGETs in one round trip)."""
        queues = [queue] if queue else [self.queue_for(q) for q in sorted(self.queues)]
        if not queues:  # QUEUES: [] (any queue): the task queues that exist now
            queues = task_queues(relay, self.config.prefix) or [
                self.queue_for("default")
            ]
        commands = [
            ("HGET", _result_key(relay.namespace, q, result_id), "m") for q in queues
        ]
        for raw in relay.connection.pipeline(commands, transaction=False):
            if raw is not None:
                loaded: dict[str, Any] = orjson.loads(raw)
                return loaded
        return None

    def _result(self, task: Task[Any, Any], record: dict[str, Any]) -> TaskResult[Any]:
        changes: dict[str, Any] = {}
        if record.get("queue_name") and record["queue_name"] != task.queue_name:
            changes["queue_name"] = record["queue_name"]
        run_after = _parse(record.get("run_after"))
        if run_after is not None:
            changes["run_after"] = run_after
        if changes:
            task = task.using(**changes)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=record["id"],
            status=TaskResultStatus(record["status"]),
            enqueued_at=_parse(record.get("enqueued_at")),
            started_at=_parse(record.get("started_at")),
            last_attempted_at=_parse(record.get("last_attempted_at")),
            finished_at=_parse(record.get("finished_at")),
            args=record.get("args", []),
            kwargs=record.get("kwargs", {}),
            backend=record.get("backend", self.alias),
            errors=[
                TaskError(
                    exception_class_path=e["exception_class_path"],
                    traceback=e["traceback"],
                )
                for e in record.get("errors", [])
            ],
            worker_ids=list(record.get("worker_ids", [])),
        )
        object.__setattr__(result, "_return_value", record.get("return_value"))
        return result
