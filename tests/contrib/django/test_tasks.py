"""The django.tasks backend, run in-process with relay.drain() (the worker's code path)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from redrelay import DrainFailed, JobFailed, Relay, Status
from redrelay.config import ConsumerOptions
from redrelay.contrib.django import InvalidRelaySettings
from redrelay.contrib.django.tasks import RedRelayBackend
from redrelay.protocol.envelope import decode_entry
from redrelay.protocol.keys import QueueKeys
from redrelay.worker.leases import Batch, Lease

from .testapp import tasks

try:
    from django.tasks import TaskResultStatus, task_backends  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import (  # type: ignore[import-not-found,unused-ignore]
        InvalidTask as InvalidTaskError,
    )
    from django.tasks.exceptions import (  # type: ignore[import-not-found,unused-ignore]
        TaskResultDoesNotExist,
    )
    from django.tasks.signals import task_enqueued, task_finished  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import TaskResultStatus, task_backends
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished


def _key(relay: Relay, result_id: str, queue: str = "tasks.default") -> str:
    """Where a task's record lives: redrelay's result record (docs/results.md)."""
    return QueueKeys.of(relay.namespace, queue).job(result_id)


def test_the_default_backend_is_ours() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, RedRelayBackend)
    assert backend.supports_defer and backend.supports_get_result
    assert backend.supports_async_task and backend.supports_priority


def test_enqueue_then_run_then_successful(app_relay: Relay) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert app_relay.queue("tasks.default").stats().ready == 1
    [message] = app_relay.queue("tasks.default").peek()
    assert message.body == {
        "id": result.id,
        "backend": "default",
        "task": "tests.contrib.django.testapp.tasks.add",
        "args": [2, 3],
        "kwargs": {},
    }
    stored = tasks.add.get_result(result.id)
    assert (stored.status, stored.args, stored.enqueued_at) == (
        TaskResultStatus.READY,
        [2, 3],
        result.enqueued_at,
    )

    app_relay.drain(["tasks.default"])
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    assert result.attempts == 1
    assert result.started_at is not None and result.finished_at is not None
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


def test_a_task_that_raises_is_failed_with_its_traceback(app_relay: Relay) -> None:
    result = tasks.explode.enqueue("kaboom")
    app_relay.drain(["tasks.default"], raise_on_failure=False)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "kaboom" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    # No redrelay retry and no dead letter: django.tasks has no retries.
    stats = app_relay.queue("tasks.default").stats()
    assert (stats.dead, stats.counters.get("retried", 0)) == (0, 0)


def test_a_failed_task_fails_the_drain_and_is_logged_with_its_traceback(
    app_relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/testing.md: drain() raises if a handler failed; a FAILED task is one. And
    django.tasks' own receiver logs it with logger.exception: the traceback must be
    the task's (it said "NoneType: None" when the signal was sent outside the except)."""
    failed = tasks.explode.enqueue("kaboom")
    ok = tasks.add.enqueue(1, 2)
    with caplog.at_level(logging.INFO), pytest.raises(DrainFailed) as info:
        app_relay.drain(["tasks.default"])
    text = str(info.value)
    assert f"task {tasks.explode.module_path}" in text and "ValueError: kaboom" in text
    [failure] = info.value.report.failures
    assert "kaboom" in failure.traceback
    failed.refresh()
    ok.refresh()
    assert (failed.status, ok.status) == (
        TaskResultStatus.FAILED,
        TaskResultStatus.SUCCESSFUL,
    )
    [logged] = [r for r in caplog.records if "state=FAILED" in r.getMessage()]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None and logged.exc_info[0] is ValueError
    # A task that succeeds drains quietly.
    tasks.add.enqueue(2, 2)
    assert app_relay.drain(["tasks.default"]).failures == []


def test_a_non_json_return_value_fails_the_task(app_relay: Relay) -> None:
    result = tasks.returns_set.enqueue()
    app_relay.drain(["tasks.default"], raise_on_failure=False)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError


def test_queue_name_context_and_async_tasks(app_relay: Relay) -> None:
    shout = tasks.shout.enqueue("hi")
    attempt = tasks.attempt.enqueue()
    double = tasks.double.enqueue(21)
    assert app_relay.queue("tasks.other").stats().ready == 1
    app_relay.drain(["tasks.default", "tasks.other"])
    for result, value in [(shout, "HI"), (attempt, 1), (double, 42)]:
        result.refresh()
        assert (result.status, result.return_value) == (
            TaskResultStatus.SUCCESSFUL,
            value,
        )
    assert shout.task.queue_name == "other"


def test_run_after_delays_the_message_and_extends_the_ttl(app_relay: Relay) -> None:
    when = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(run_after=when).enqueue(1, 1)
    stats = app_relay.queue("tasks.default").stats()
    assert (stats.ready, stats.delayed) == (0, 1)
    ttl = app_relay.connection.call("TTL", _key(app_relay, result.id))
    assert 600 + 3500 < ttl <= 600 + 3600
    assert tasks.add.get_result(result.id).task.run_after == when


def test_priorities_run_higher_first(app_relay: Relay) -> None:
    low = tasks.add.using(priority=-5).enqueue(1, 1)
    plain = tasks.add.enqueue(2, 2)
    urgent = tasks.add.using(priority=50).enqueue(3, 3)
    assert app_relay.queue("tasks.default").stats().prioritized == 2
    lease = Lease(
        app_relay.connection,
        app_relay.queue("tasks.default").keys,
        ConsumerOptions.build(),
    )
    lease.join()
    _, batch = lease.fetch(10)
    assert isinstance(batch, Batch)
    order = [decode_entry(e).envelope["b"]["id"] for e in batch.entries]  # type: ignore[index]
    assert order == [urgent.id, plain.id, low.id]
    with pytest.raises(InvalidTaskError):
        tasks.add.using(priority=101)


def test_arguments_must_be_json(app_relay: Relay) -> None:
    with pytest.raises(TypeError):
        tasks.add.enqueue({1}, 2)
    assert app_relay.queue("tasks.default").stats().ready == 0


def test_unknown_and_expired_results_do_not_exist(app_relay: Relay) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("nope")
    result = tasks.add.enqueue(1, 2)
    app_relay.connection.call("DEL", _key(app_relay, result.id))
    with pytest.raises(TaskResultDoesNotExist):
        result.refresh()
    # The task still runs, with a record rebuilt from its message.
    app_relay.drain(["tasks.default"])
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 3)


def test_a_finished_task_delivered_again_does_not_run_again(app_relay: Relay) -> None:
    result = tasks.add.enqueue(1, 2)
    [message] = app_relay.queue("tasks.default").peek()
    app_relay.drain(["tasks.default"])
    app_relay.queue("tasks.default").put(
        message.body
    )  # as after a crash before the ack
    app_relay.drain(["tasks.default"])
    result.refresh()
    assert result.attempts == 1


def test_a_message_that_is_not_a_task_is_dead_lettered(app_relay: Relay) -> None:
    app_relay.queue("tasks.default").put({"hello": "world"})
    app_relay.drain(["tasks.default"], raise_on_failure=False)
    [dead] = app_relay.queue("tasks.default").dead_letters()
    assert "not a task message" in dead.reason


def test_results_expire(app_relay: Relay) -> None:
    result = tasks.add.enqueue(1, 2)
    ttl = app_relay.connection.call("TTL", _key(app_relay, result.id))
    assert 0 < ttl <= 600


def test_async_enqueue_and_get_result(app_relay: Relay) -> None:
    async def go() -> Any:
        result = await tasks.add.aenqueue(4, 5)
        return await tasks.add.aget_result(result.id)

    assert asyncio.run(go()).status == TaskResultStatus.READY


def test_signals(app_relay: Relay) -> None:
    seen: list[tuple[str, str]] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("enqueued", task_result.status))

    def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("finished", task_result.status))

    task_enqueued.connect(on_enqueued)
    task_finished.connect(on_finished)
    try:
        tasks.add.enqueue(1, 1)
        app_relay.drain(["tasks.default"])
    finally:
        task_enqueued.disconnect(on_enqueued)
        task_finished.disconnect(on_finished)
    assert seen == [("enqueued", "READY"), ("finished", "SUCCESSFUL")]


def test_invalid_backend_settings_fail_on_use(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "redrelay.contrib.django.tasks.RedRelayBackend",
            "OPTIONS": {"RESULT_TTL": -1},
        }
    }
    with pytest.raises(InvalidRelaySettings, match="RESULT_TTL"):
        task_backends["default"].get_result("x")


def test_results_are_redrelay_results(app_relay: Relay) -> None:
    """The same record as queue.result()/status() and their waiters read."""
    ok = tasks.add.enqueue(20, 22)
    bad = tasks.explode.enqueue("kaboom")
    q = app_relay.queue("tasks.default")
    assert q.status(ok.id) is Status.QUEUED
    app_relay.drain(["tasks.default"], raise_on_failure=False)
    assert q.status(ok.id) is Status.SUCCEEDED
    assert q.result(ok.id, timeout=5) == 42
    with pytest.raises(JobFailed) as info:
        q.result(bad.id, timeout=5)
    assert info.value.error_type == "builtins.ValueError"
    assert info.value.error_message == "kaboom"
    # Not for task ids: found nowhere, and nothing changed.
    later = tasks.add.enqueue(1, 1)
    assert q.cancel(later.id) is False
    assert q.status(later.id) is Status.QUEUED
