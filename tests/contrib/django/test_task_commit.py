"""django.tasks tasks sent only after the commit, with a real relay_worker (issue 16)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from redrelay import ConfigurationError, EncodeError, Relay
from redrelay.contrib.django import enqueue_task_on_commit, flush_outbox
from redrelay.contrib.django.models import OutboxMessage

from ...worker.helpers import wait_for
from .conftest import DjangoWorker
from .testapp import tasks

try:
    from django.tasks import TaskResultStatus  # type: ignore[import-not-found,unused-ignore]
    from django.tasks.exceptions import TaskResultDoesNotExist  # type: ignore[import-not-found,unused-ignore]

    DUMMY = "django.tasks.backends.dummy.DummyBackend"
except ImportError:
    from django_tasks import TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist

    DUMMY = "django_tasks.backends.dummy.DummyBackend"

pytestmark = pytest.mark.django_db(transaction=True)


def finished(result: Any) -> bool:
    try:
        result.refresh()
    except TaskResultDoesNotExist:
        return False
    return bool(result.is_finished)


@pytest.mark.parametrize("outbox", [False, True])
def test_a_task_enqueued_on_commit_sees_the_committed_row(
    app_relay: Relay, start_worker: Callable[..., DjangoWorker], outbox: bool
) -> None:
    worker = start_worker("--no-subscribers")
    queue = app_relay.queue("tasks.default")
    with transaction.atomic():
        row = ContentType.objects.create(app_label="rrtest", model=f"order{outbox}")
        result = enqueue_task_on_commit(tasks.lookup, [row.model], outbox=outbox)
        assert result.status == TaskResultStatus.READY and result.id
        # Nothing reached Redis yet: the worker cannot run it before the commit.
        assert queue.stats().ready + queue.stats().in_flight == 0
        assert OutboxMessage.objects.count() == int(outbox)
    wait_for(lambda: finished(result), timeout=30, what="the task")
    assert result.status == TaskResultStatus.SUCCESSFUL, worker.output()
    assert result.return_value == row.pk
    assert OutboxMessage.objects.count() == 0


def test_djangos_documented_pattern_works_with_the_worker(
    start_worker: Callable[..., DjangoWorker],
) -> None:
    """topics/tasks "Transactions": transaction.on_commit(partial(task.enqueue, ...))."""
    start_worker("--no-subscribers")
    results: list[Any] = []
    with transaction.atomic():
        ContentType.objects.create(app_label="rrtest", model="documented")
        transaction.on_commit(
            lambda: results.append(partial(tasks.lookup.enqueue, "documented")())
        )
        assert results == []
    wait_for(lambda: finished(results[0]), timeout=30, what="the task")
    assert results[0].status == TaskResultStatus.SUCCESSFUL


def test_a_rollback_enqueues_nothing(app_relay: Relay) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_task_on_commit(tasks.add, [1, 2])
        enqueue_task_on_commit(tasks.add, [3, 4], outbox=True)
        raise RuntimeError("rolled back")
    assert app_relay.queue("tasks.default").stats().ready == 0
    assert OutboxMessage.objects.count() == 0


def test_a_row_sent_twice_runs_once_and_keeps_its_result(app_relay: Relay) -> None:
    from redrelay.contrib.django.outbox import _send

    with transaction.atomic():
        result = enqueue_task_on_commit(tasks.shout, kwargs={"text": "hi"}, outbox=True)
        row = OutboxMessage.objects.get()
    assert row.kind == "task" and row.name == "default"
    app_relay.drain(["tasks.other"])  # queue_name="other"
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, "HI")
    _send(row)  # a relay that crashed before its delete sends the row again
    assert app_relay.queue("tasks.other").stats().ready == 0  # dedup_key
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL  # the record was kept
    assert flush_outbox() == 0


@pytest.mark.parametrize("outbox", [False, True])
def test_a_task_sent_on_commit_has_a_random_id_and_keeps_its_priority(
    app_relay: Relay, outbox: bool
) -> None:
    """As task.enqueue(): an unguessable id, and the task's priority on the queue."""
    with transaction.atomic():
        result = enqueue_task_on_commit(
            tasks.add.using(priority=7), [1, 2], outbox=outbox
        )
    # 32 random characters, not a time-sortable message id that reveals its neighbours
    assert len(result.id) == 32 and result.id.isalnum(), result.id
    stats = app_relay.queue("tasks.default").stats()
    assert (stats.ready, stats.prioritized) == (1, 1)  # on the priority set, not p=0
    app_relay.drain(["tasks.default"])
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 3)
    assert result.task.priority == 7


def test_bad_input_fails_in_the_caller(settings: Any) -> None:
    with pytest.raises(EncodeError), transaction.atomic():
        enqueue_task_on_commit(tasks.add, [object(), 1])
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    with pytest.raises(ConfigurationError, match="partial"):
        enqueue_task_on_commit(tasks.add.using(backend="default"), [1, 2])
