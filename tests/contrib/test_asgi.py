"""The ASGI glue and example on real servers: uvicorn on a loopback port, a real worker
process, a real Redis; SSE streams read with a bounded count and a deadline."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from redrelay import Relay
from redrelay.contrib.asgi import channel_stream, topic_stream
from redrelay.contrib.sse import hub_for

from ..asgi_example import free_port, run_example
from ..processes import wait_for

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def _events(lines: Iterator[str], count: int, deadline: float) -> list[dict[str, str]]:
    """Read ``count`` SSE events with data (comments and ``retry:`` skipped) before
    ``deadline``."""
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line == "":
            if "data" in event:
                events.append(event)
            event = {}
            if len(events) == count:
                break
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        event[field] = event.get(field, "") + value
    return events


class _Server:
    """uvicorn serving ``app`` on a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=WAIT, what="uvicorn started")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        # uvicorn's shutdown waits for every open request: a stream still running after
        # its client left (a lost cancellation, see contrib/asgi._stop) shows up here.
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), (
            "uvicorn did not stop: a request is still open"
        )


def test_channel_stream_streams_and_unregisters_on_disconnect(relay: Relay) -> None:
    hub = hub_for(relay)
    app = Starlette(
        routes=[
            Route(
                "/events/{channel}",
                channel_stream(relay, authorize=lambda scope, ch: ch != "secret"),
            )
        ]
    )
    try:
        with _Server(app) as base, httpx.Client(base_url=base, timeout=WAIT) as client:
            assert client.get("/events/secret").status_code == 403
            bad = client.get("/events/bad name!")
            assert bad.status_code == 404 and "channel" in bad.text
            with client.stream("GET", "/events/news") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                assert next(lines).startswith(": redrelay channel news")
                wait_for(lambda: hub.clients == 1, what="stream registered")
                for n in range(3):
                    relay.publish("news", {"n": n}, headers={"event": "tick"})
                events = _events(lines, 3, time.monotonic() + WAIT)
            assert [json.loads(e["data"]) for e in events] == [
                {"n": n} for n in range(3)
            ]
            assert {e["event"] for e in events} == {"tick"}
            # the client left: the server noticed at once (no keep-alive needed)
            wait_for(lambda: hub.clients == 0, what="stream unregistered")
    finally:
        hub.close()


def test_topic_stream_resumes_after_last_event_id(relay: Relay) -> None:
    """A topic over ASGI: frames carry stream ids, and a client that comes back with
    Last-Event-ID gets exactly what it missed (the WSGI stream's code, on redis.asyncio)."""
    topic = relay.topic("orders")
    app = Starlette(
        routes=[
            Route(
                "/topics/{topic}",
                topic_stream(
                    relay,
                    authorize=lambda scope, t: t != "secret",
                    start="beginning",
                    # longer than WAIT: only the client leaving can end a stream
                    keepalive=3 * WAIT,
                ),
            )
        ]
    )
    ids = [topic.publish({"n": n}, headers={"event": "order"}) for n in range(3)]
    with _Server(app) as base, httpx.Client(base_url=base, timeout=WAIT) as client:
        assert client.get("/topics/secret").status_code == 403
        assert client.get("/topics/bad name!").status_code == 404
        with client.stream("GET", "/topics/orders") as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith(": redrelay topic orders")
            first = _events(lines, 3, time.monotonic() + WAIT)
        assert [e["id"] for e in first] == ids
        assert [json.loads(e["data"]) for e in first] == [{"n": n} for n in range(3)]
        assert {e["event"] for e in first} == {"order"}
        missed = [topic.publish({"n": n}, headers={"event": "order"}) for n in (3, 4)]
        headers = {"Last-Event-ID": ids[1]}
        with client.stream("GET", "/topics/orders", headers=headers) as response:
            again = _events(response.iter_lines(), 3, time.monotonic() + WAIT)
    assert [e["id"] for e in again] == [ids[2], *missed]


@pytest.fixture
def example(
    make_relay: Callable[..., Relay], redrelay_url: str
) -> Iterator[tuple[str, Relay]]:
    """The example app under uvicorn and its worker, as real subprocesses."""
    relay = make_relay()
    with run_example(redrelay_url, relay.namespace) as base:
        yield base, relay


def test_example_enqueues_with_aput_and_streams_async_progress(
    example: tuple[str, Relay],
) -> None:
    base, relay = example
    with httpx.Client(base_url=base, timeout=WAIT) as client:
        assert "EventSource" in client.get("/").text
        assert client.get("/events/jobs").status_code == 403  # not a public channel
        with client.stream("GET", "/events/progress") as response:
            lines = response.iter_lines()
            assert next(lines).startswith(": redrelay channel progress")
            posted = client.post("/jobs", json={"count": 4, "steps": 3})
            assert posted.status_code == 202
            run, ids = posted.json()["run"], posted.json()["ids"]
            assert len(ids) == 4
            events = _events(lines, 12, time.monotonic() + WAIT)
        assert client.post("/jobs", json={"count": 0}).status_code == 400
    progress = [json.loads(e["data"]) for e in events if e.get("event") == "progress"]
    assert len(progress) == 12
    assert {(p["run"], p["job"], p["step"]) for p in progress} == {
        (run, job, step) for job in range(1, 5) for step in range(1, 4)
    }
    wait_for(
        lambda: relay.queue("jobs").stats().counters.get("acked") == 4,
        what="the worker acked every job",
    )
    # the example mounts the dashboard at /relay (loopback: no login needed)
    with httpx.Client(base_url=base, timeout=WAIT) as client:
        overview = client.get("/relay/api/overview").json()
        assert [
            q["counters"]["acked"] for q in overview["queues"] if q["name"] == "jobs"
        ] == [4]
        assert "Overview" in client.get("/relay/").text
        with contextlib.ExitStack() as streams:
            # more open tabs than the default thread pool has threads: a stream holds
            # no thread, so the pages still answer
            for _ in range(10):
                response = streams.enter_context(client.stream("GET", "/relay/events"))
                lines = response.iter_lines()
                assert next(lines) == "retry: 2000"
                assert next(lines) == ""
                assert next(lines).startswith("id: ")
            assert client.get("/relay/api/overview").status_code == 200
    # the durable "done" topic keeps the finished jobs for a page that comes back
    with httpx.Client(base_url=base, timeout=WAIT) as client:
        assert client.get("/topics/jobs").status_code == 403  # not a public topic
        with client.stream("GET", "/topics/done") as response:
            done = _events(response.iter_lines(), 4, time.monotonic() + WAIT)
    assert {
        (json.loads(e["data"])["run"], json.loads(e["data"])["job"]) for e in done
    } == {(run, job) for job in range(1, 5)}
    assert {e["event"] for e in done} == {"done"}
