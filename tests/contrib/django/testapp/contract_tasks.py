"""Tasks for the django.tasks contract tests (test_tasks_contract.py).

Importing this module connects receivers of the task signals that record, in Redis
(``<namespace>:test:signals``), "<signal> <result id> <status>" for the tasks of this
module only, so that a test can see the signals a worker process sent.
"""

from __future__ import annotations

import sys
from typing import Any

from redrelay.contrib.django import get_relay

try:
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.signals import (  # type: ignore[import-not-found,unused-ignore]
        task_finished,
        task_started,
    )
except ImportError:
    from django_tasks import task
    from django_tasks.signals import task_finished, task_started


@task
def ok(n: int) -> int:
    return n


@task
def raises(kind: str) -> None:
    if kind == "SystemExit":
        sys.exit(1)
    if kind == "exit":
        exit(1)  # the builtin (site.Quitter) users write by mistake
    raise {
        "KeyboardInterrupt": KeyboardInterrupt,
        "GeneratorExit": GeneratorExit,
        "ValueError": ValueError,
    }[kind](kind)


@task
def returns(kind: str) -> Any:
    return {"bytes": b"hi", "tuple": (1, 2), "set": {1}, "int-keys": {1: "a"}}[kind]


@task(takes_context=True)
def context(context: Any) -> list[Any]:
    return [context.task_result.id, context.attempt]


@task
async def adouble(n: int) -> int:
    return 2 * n


@task
def slow(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "done"


def _record(signal: str, task_result: Any) -> None:
    if not task_result.task.module_path.startswith(__name__):
        return
    relay = get_relay()
    relay.connection.call(
        "RPUSH",
        f"{relay.namespace}:test:signals",
        f"{signal} {task_result.id} {task_result.status}",
    )


def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("started", task_result)


def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("finished", task_result)


task_started.connect(_started, dispatch_uid="contract_tasks.started")
task_finished.connect(_finished, dispatch_uid="contract_tasks.finished")
