"""``manage.py relay_worker`` as a real subprocess: consumers, subscribers, tasks, the
outbox relay, and a graceful stop on SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from redrelay import Relay
from redrelay.contrib.django.models import OutboxMessage

from ...processes import wait_for
from .conftest import DjangoWorker, runs
from .testapp import tasks

try:
    from django.tasks import TaskResultStatus  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from django_tasks import TaskResultStatus


def events(relay: Relay, where: str, event: str) -> list[str]:
    return [r[1] for r in runs(relay) if r[0] == where and r[3] == event]


@pytest.mark.django_db(transaction=True)
def test_relay_worker_runs_everything_and_stops_gracefully(
    app_relay: Relay, start_worker: Callable[..., DjangoWorker]
) -> None:
    jobs = [app_relay.queue("jobs").put({"op": "ok", "n": i}) for i in range(3)]
    added, failed = tasks.add.enqueue(2, 3), tasks.explode.enqueue("no")
    shouted = tasks.shout.enqueue("hi")
    # A row another process committed (its after-commit send did not happen).
    OutboxMessage.objects.create(name="jobs", body={"op": "ok", "from": "outbox"})

    worker = start_worker()
    wait_for(lambda: len(events(app_relay, "jobs", "done")) == 4, what="four jobs")
    assert set(jobs) < set(events(app_relay, "jobs", "done"))
    assert OutboxMessage.objects.count() == 0

    def finished(result: Any) -> bool:
        result.refresh()
        return bool(result.is_finished)

    for result in (added, failed, shouted):
        wait_for(lambda r=result: finished(r), what="a task")
    assert (added.status, added.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    assert failed.status == TaskResultStatus.FAILED
    assert "ValueError: no" in failed.errors[0].traceback
    assert shouted.return_value == "HI"
    assert added.worker_ids[0].endswith(f":{worker.proc.pid}")

    # The subscriber: publish until the worker's listener is subscribed and hears it.
    wait_for(
        lambda: (
            app_relay.publish("news", {"n": 1}) and events(app_relay, "news", "heard")
        ),
        interval=0.1,
        what="the subscriber",
    )

    sleeper = app_relay.queue("jobs").put({"op": "sleep", "s": 1.0})
    wait_for(lambda: sleeper in events(app_relay, "jobs", "start"), what="the sleeper")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(15) == 0
    assert sleeper in events(app_relay, "jobs", "done")  # finished within --grace
    output = worker.output()
    assert "ready: queues [" in output and "jobs" in output
    assert "stopped" in output
    assert app_relay.queue("jobs").stats().in_flight == 0


def test_relay_worker_processes(
    app_relay: Relay, start_worker: Callable[..., DjangoWorker]
) -> None:
    worker = start_worker("--processes", "2", "-q", "jobs", "--no-outbox")
    jobs = app_relay.queue("jobs")
    wait_for(lambda: jobs.stats().consumers == 2, what="two worker processes")
    for i in range(20):
        jobs.put({"op": "sleep", "s": 0.05, "n": i})
    wait_for(lambda: len(events(app_relay, "jobs", "done")) == 20, what="20 jobs")
    pids = {r[2] for r in runs(app_relay) if r[3] == "done"}
    assert len(pids) == 2 and worker.proc.pid not in pids
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(15) == 0
