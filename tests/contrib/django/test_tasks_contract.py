"""Our contract tests of the django.tasks backend, against a real ``relay_worker``.

What a project may rely on, whichever backend it runs (issue 18): the status a task
ends with for every kind of exception (``SystemExit`` included: FAILED, and the tasks
behind it still run), ``run_after``, ``takes_context``, async enqueue and results, the
signals the worker sends, queue validation, the exceptions for a bad task path, result
ids that reveal nothing, and the worker's exit status on SIGTERM and SIGINT.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

from redrelay import Relay

from ...worker.helpers import wait_for
from .conftest import DjangoWorker
from .testapp import contract_tasks as ct

try:
    from django.tasks import TaskResultStatus, task_backends  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import (  # type: ignore[import-not-found,unused-ignore]
        InvalidTask as InvalidTaskError,
    )
except ImportError:
    from django_tasks import TaskResultStatus, task_backends
    from django_tasks.exceptions import InvalidTaskError

pytestmark = pytest.mark.django_db(transaction=True)


def finished(result: Any, timeout: float = 20.0) -> Any:
    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    wait_for(done, timeout=timeout, what=f"task {result.task.name} {result.id}")
    return result


@pytest.mark.parametrize(
    ("kind", "exception"),
    [
        ("ValueError", "builtins.ValueError"),
        ("SystemExit", "builtins.SystemExit"),
        ("exit", "builtins.SystemExit"),
        ("KeyboardInterrupt", "builtins.KeyboardInterrupt"),
        ("GeneratorExit", "builtins.GeneratorExit"),
    ],
)
def test_every_kind_of_exception_fails_the_task_and_the_queue_goes_on(
    app_relay: Relay,
    start_worker: Callable[..., DjangoWorker],
    kind: str,
    exception: str,
) -> None:
    failing = ct.raises.enqueue(kind)
    behind = [ct.ok.enqueue(n) for n in range(5)]
    worker = start_worker("--no-outbox", "-c", "1")
    assert finished(failing).status == TaskResultStatus.FAILED
    [error] = failing.errors
    assert error.exception_class_path == exception
    assert "Traceback" in error.traceback
    for n, result in enumerate(behind):
        assert finished(result).status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == n
    # A failed task is a result, not a redrelay failure: acked, nothing dead. The
    # result is saved by the handler, and the ack follows it: wait for the last ack.
    queue = app_relay.queue("tasks.default")
    wait_for(lambda: queue.stats().in_flight == 0, what="the last task's ack")
    assert queue.stats().dead == 0
    assert worker.proc.poll() is None


@pytest.mark.parametrize(
    ("kind", "status", "value"),
    [
        ("bytes", "SUCCESSFUL", "hi"),  # Django's JSON normalisation: bytes -> str
        ("tuple", "SUCCESSFUL", [1, 2]),
        ("int-keys", "SUCCESSFUL", {"1": "a"}),  # keys become str in JSON
        ("set", "FAILED", "builtins.TypeError"),
    ],
)
def test_return_values_follow_djangos_json_normalisation(
    start_worker: Callable[..., DjangoWorker], kind: str, status: str, value: Any
) -> None:
    result = ct.returns.enqueue(kind)
    worker = start_worker("--no-outbox")
    assert finished(result).status == status
    if status == "SUCCESSFUL":
        assert result.return_value == value
    else:
        assert result.errors[0].exception_class_path == value
        # the task framework's own failure line, in the worker's format, with its traceback
        line = f"ERROR django_tasks: Task id={result.id}"
        wait_for(lambda: line in worker.output(), what="the FAILED task logged")
        assert "TypeError" in worker.output().split(line, 1)[1]


def test_run_after_context_async_and_signals(
    app_relay: Relay, start_worker: Callable[..., DjangoWorker]
) -> None:
    later = timezone.now() + timedelta(seconds=1.5)
    deferred = ct.ok.using(run_after=later).enqueue(7)
    contextual = ct.context.enqueue()

    async def enqueue_async() -> Any:
        result = await ct.adouble.aenqueue(21)
        assert (await ct.adouble.aget_result(result.id)).status == "READY"
        return result

    doubled = asyncio.run(enqueue_async())
    start_worker("--no-outbox")
    assert finished(contextual).return_value == [contextual.id, 1]
    assert finished(doubled).return_value == 42
    refreshed = asyncio.run(ct.adouble.aget_result(doubled.id))
    assert (refreshed.status, refreshed.return_value) == ("SUCCESSFUL", 42)
    assert finished(deferred).return_value == 7
    assert deferred.started_at is not None and deferred.started_at >= later
    assert deferred.task.run_after == later

    # The signals, as the worker process sent them (task_finished is sent after the result
    # is saved, so the last one may still be on its way).
    def signals() -> list[list[str]]:
        raw = app_relay.connection.call(
            "LRANGE", f"{app_relay.namespace}:test:signals", 0, -1
        )
        return [line.decode().split() for line in raw]

    wait_for(lambda: len(signals()) >= 6, what="two signals for each of three tasks")
    seen = signals()
    for result in (deferred, contextual, doubled):
        assert [s for s in seen if s[1] == result.id] == [
            ["started", result.id, "RUNNING"],
            ["finished", result.id, "SUCCESSFUL"],
        ]


def test_queue_validation_and_result_ids(app_relay: Relay) -> None:
    with pytest.raises(InvalidTaskError, match="not valid for backend"):
        ct.ok.using(queue_name="nowhere").enqueue(1)
    assert app_relay.queue("tasks.nowhere").stats().ready == 0
    ids = [ct.ok.enqueue(n).id for n in range(20)]
    # Random, like the reference backends': one id says nothing about the next.
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", i) for i in ids)
    assert len({i[:8] for i in ids}) == 20


@pytest.mark.parametrize(
    ("path", "exception", "raised"),
    [
        (
            "os.path.join",
            "django.core.exceptions.SuspiciousOperation",
            SuspiciousOperation,
        ),
        ("no_such_module.task", "builtins.ModuleNotFoundError", ImportError),
    ],
)
def test_a_bad_task_path_fails_like_the_reference_backends(
    app_relay: Relay,
    start_worker: Callable[..., DjangoWorker],
    path: str,
    exception: str,
    raised: type[Exception],
) -> None:
    result_id = "b" * 32
    body = {
        "id": result_id,
        "backend": "default",
        "task": path,
        "args": [],
        "kwargs": {},
    }
    record = {**body, "queue_name": "default", "status": "READY", "errors": []}
    backend = task_backends["default"]
    backend._save(app_relay, record)  # as enqueue() would have, before the path broke
    app_relay.queue("tasks.default").put(body)
    with pytest.raises(raised):
        backend.get_result(result_id)
    start_worker("--no-outbox")

    def failed() -> Any:
        stored = backend._load(app_relay, result_id)
        return stored is not None and stored["status"] == "FAILED" and stored

    stored = wait_for(failed, what="the FAILED record")
    assert [e["exception_class_path"] for e in stored["errors"]] == [exception]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_finishes_the_running_task_and_exits_0(
    start_worker: Callable[..., DjangoWorker], sig: signal.Signals
) -> None:
    running = ct.slow.enqueue(1.0)
    worker = start_worker("--no-outbox", "--grace", "10")
    wait_for(
        lambda: (running.refresh(), running.status == "RUNNING")[1],
        what="the task to start",
    )
    worker.proc.send_signal(sig)
    assert worker.proc.wait(20) == 0
    assert finished(running).status == TaskResultStatus.SUCCESSFUL
