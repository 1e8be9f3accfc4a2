"""The example app (examples/flask_app): its pages, and real worker subprocesses that
run the jobs its form enqueues — including one SIGKILLed mid-run, which loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from examples.flask_app.app import JOBS, broker
from flask import Flask

from .helpers import EventReader, WorkerProcess, example_env, wait_for

StartWorker = Callable[..., WorkerProcess]


def jobs_stats(app: Flask) -> Any:
    with app.app_context():
        return broker.queue(JOBS).stats()


def enqueue(app: Flask, count: int, steps: int, delay: float) -> str:
    response = app.test_client().post(
        "/jobs",
        data={"count": count, "steps": steps, "delay": delay},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 202, response.data
    assert response.json is not None and response.json["count"] == count
    return str(response.json["run"])


def progress_reader(app: Flask) -> EventReader:
    response = app.test_client().get("/events/progress", buffered=False)
    assert response.status_code == 200
    return EventReader(response.response)


def done_jobs(reader: EventReader, run: str) -> set[int]:
    return {
        p["job"]
        for p in reader.json("progress")
        if p["run"] == run and p["step"] == p["steps"]
    }


def test_pages(example_app: Flask) -> None:
    client = example_app.test_client()
    page = client.get("/")
    assert page.status_code == 200
    for marker in (b'id="jobs-form"', b'id="status"', b"jobs.js"):
        assert marker in page.data
    with client.get("/static/jobs.js") as script:
        assert script.status_code == 200
    assert client.get("/events/secret").status_code == 403  # the app's authorize()
    assert client.post("/jobs", data={"count": 0}).status_code == 400
    assert client.post("/jobs", data={"count": "many"}).status_code == 400
    assert client.post("/notify", data={"text": ""}).status_code == 400
    # The plain form (no JavaScript) enqueues and redirects back to the page.
    response = client.post("/jobs", data={"count": 3})
    assert response.status_code == 303
    stats = client.get("/stats").json
    assert stats is not None and stats["ready"] == 3 and stats["name"] == JOBS


def test_notifications_reach_open_pages(example_app: Flask) -> None:
    response = example_app.test_client().get("/events/notifications", buffered=False)
    reader = EventReader(response.response)
    posted = example_app.test_client().post("/notify", data={"text": "deploy done"})
    assert posted.status_code == 202
    wait_for(lambda: reader.json(), what="the notification")
    assert reader.json() == [{"text": "deploy done"}]
    reader.close()


def test_flask_relay_worker_runs_the_forms_jobs(
    example_app: Flask, redrelay_url: str, namespace: str, start_worker: StartWorker
) -> None:
    worker = start_worker("flask", example_env(redrelay_url, namespace))
    worker.wait_ready()
    reader = progress_reader(example_app)
    run = enqueue(example_app, count=4, steps=2, delay=0.02)
    wait_for(lambda: done_jobs(reader, run) == {1, 2, 3, 4}, what="4 jobs done")
    events = [p for p in reader.json("progress") if p["run"] == run]
    assert {p["worker"] for p in events} == {worker.pid}  # run by the subprocess
    wait_for(lambda: jobs_stats(example_app).counters.get("acked") == 4)
    reader.close()
    assert worker.stop() == 0, worker.output()  # SIGTERM: graceful, status 0
    assert "stopped" in worker.output()


def test_killing_the_worker_mid_run_loses_no_job(
    example_app: Flask, redrelay_url: str, namespace: str, start_worker: StartWorker
) -> None:
    env = example_env(redrelay_url, namespace, REDRELAY_LEASE=1)
    first = start_worker("redrelay", env)
    first.wait_ready()
    reader = progress_reader(example_app)
    count = 6
    run = enqueue(example_app, count=count, steps=4, delay=0.1)
    # Kill it once some job is done and others are half-way.
    wait_for(lambda: done_jobs(reader, run), what="a first job done")
    first.kill()
    stats = jobs_stats(example_app)
    assert stats.counters.get("acked", 0) < count
    assert stats.in_flight + stats.ready > 0, "nothing left to lose: kill earlier"

    second = start_worker("flask", env)
    wait_for(
        lambda: done_jobs(reader, run) == set(range(1, count + 1)),
        timeout=30,
        what="every job done",
    )
    wait_for(lambda: jobs_stats(example_app).counters.get("acked") == count)
    stats = jobs_stats(example_app)
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 0)
    assert stats.counters.get("recovered", 0) >= 1
    events = [p for p in reader.json("progress") if p["run"] == run]
    # The jobs the killed worker held ran again, in the second worker.
    retried = {p["job"] for p in events if p["attempt"] > 1}
    assert retried
    assert {p["worker"] for p in events if p["attempt"] > 1} == {second.pid}
    reader.close()


def test_flask_relay_worker_processes_2(
    example_app: Flask, redrelay_url: str, namespace: str, start_worker: StartWorker
) -> None:
    supervisor = start_worker(
        "flask", example_env(redrelay_url, namespace), "--processes", "2"
    )
    wait_for(
        lambda: jobs_stats(example_app).consumers == 2, what="two worker processes"
    )
    reader = progress_reader(example_app)
    run = enqueue(example_app, count=6, steps=1, delay=0.05)
    wait_for(lambda: done_jobs(reader, run) == set(range(1, 7)), what="6 jobs done")
    workers = {p["worker"] for p in reader.json("progress") if p["run"] == run}
    assert supervisor.pid not in workers  # run by the children, not the supervisor
    reader.close()
    assert supervisor.stop() == 0, supervisor.output()
    wait_for(lambda: jobs_stats(example_app).consumers == 0, what="children gone")
