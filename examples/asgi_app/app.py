"""The Flask example's scenario on asyncio: an ASGI app, async jobs, live progress.

``POST /jobs`` enqueues jobs with ``await queue.aput(...)`` (no thread is blocked on
Redis); a worker runs them as ``async def`` handlers, up to 20 at once as coroutines on
one event loop, each publishing its progress with ``await relay.apublish(...)``; the
page reads the ``progress`` channel at ``/events/progress`` (server-sent events through
:mod:`redrelay.contrib.asgi`, one shared Redis subscription per process). A finished job
is also published on the durable ``done`` topic (``await topic.apublish(...)``), which
the page streams from ``/topics/done``: reload the page, or cut the network, and the
browser's ``Last-Event-ID`` resumes that list where it stopped, missing nothing.

Run it on the embedded Redis, with a worker and uvicorn::

    scripts/example-asgi                                   # then open http://127.0.0.1:8001

or by hand, in two terminals::

    redrelay worker examples.asgi_app.app:relay
    uvicorn examples.asgi_app.app:app --port 8001 --timeout-graceful-shutdown 2

(an open event stream is a request in progress: without the timeout, uvicorn's graceful
shutdown waits for the browser tab to close).

Environment: ``REDRELAY_URL`` (default: the embedded server), ``ASGI_EXAMPLE_NAMESPACE``
(default ``asgi-example``), ``ASGI_EXAMPLE_STEP_SECONDS`` (default 0.3).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from redrelay import Message, Relay
from redrelay.contrib.asgi import channel_stream, topic_stream
from redrelay.contrib.sse import hub_for
from redrelay.dashboard.asgi import app as dashboard_app

__all__ = ["app", "relay"]

#: The queue of jobs, and the channels the page may watch.
JOBS = "jobs"
PROGRESS = "progress"
PUBLIC_CHANNELS = frozenset({PROGRESS})
#: The durable topic of finished jobs, and the topics the page may watch.
DONE = "done"
PUBLIC_TOPICS = frozenset({DONE})
#: Most jobs one request may enqueue, and most steps per job.
MAX_JOBS, MAX_STEPS = 50, 20
STEP_SECONDS = float(os.environ.get("ASGI_EXAMPLE_STEP_SECONDS", "0.3"))

relay = Relay(
    namespace=os.environ.get("ASGI_EXAMPLE_NAMESPACE", "asgi-example"), lease=5
)


@relay.consumer(JOBS, concurrency=20, retries=2)
async def run_job(message: Message) -> None:
    """Do a job in steps, publishing progress after each; up to 20 run at once.

    A job that was running when its worker died is delivered again (``attempt`` 2)
    and starts over: handlers must be safe to run twice.
    """
    job = message.body
    progress = {**job, "attempt": message.attempt, "worker": os.getpid()}
    for step in range(1, job["steps"] + 1):
        await asyncio.sleep(STEP_SECONDS)
        await relay.apublish(
            PROGRESS, {**progress, "step": step}, headers={"event": "progress"}
        )
    await relay.topic(DONE).apublish(progress, headers={"event": "done"})


async def index(request: Request) -> Response:
    return HTMLResponse(PAGE)


async def enqueue(request: Request) -> Response:
    """Enqueue ``count`` jobs of ``steps`` steps: ``{"count": 3, "steps": 4}``."""
    try:
        form: dict[str, Any] = await request.json()
        count, steps = int(form.get("count", 1)), int(form.get("steps", 5))
    except (ValueError, TypeError):
        return JSONResponse({"error": "send JSON {count, steps} (integers)"}, 400)
    if not (1 <= count <= MAX_JOBS and 1 <= steps <= MAX_STEPS):
        return JSONResponse(
            {"error": f"count must be 1..{MAX_JOBS} and steps 1..{MAX_STEPS}"}, 400
        )
    run = os.urandom(4).hex()
    jobs = relay.queue(JOBS)
    ids = [
        await jobs.aput({"run": run, "job": n, "of": count, "steps": steps})
        for n in range(1, count + 1)
    ]
    return JSONResponse({"run": run, "ids": ids}, 202)


async def stats(request: Request) -> Response:
    (queue,) = await relay.astats([JOBS])
    return JSONResponse(
        {"ready": queue.ready, "in_flight": queue.in_flight, "dead": queue.dead}
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    dashboard.dashboard.close()  # type: ignore[attr-defined]
    hub_for(relay).close()  # ends open streams, stops the shared subscription
    await relay.aclose()


#: The operator's dashboard at /relay/: browsers on this machine only (an example);
#: a deployed app passes token= or auth= instead.
dashboard = dashboard_app(relay, anonymous=True)

app = Starlette(
    routes=[
        Mount("/relay", app=dashboard),
        Route("/", index),
        Route("/jobs", enqueue, methods=["POST"]),
        Route("/stats", stats),
        Route(
            "/events/{channel}",
            channel_stream(relay, authorize=lambda scope, ch: ch in PUBLIC_CHANNELS),
        ),
        Route(
            "/topics/{topic}",
            topic_stream(
                relay, authorize=lambda scope, t: t in PUBLIC_TOPICS, start="beginning"
            ),
        ),
    ],
    lifespan=lifespan,
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>redrelay · ASGI jobs</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; }
 td, th { text-align: left; padding: .2rem .5rem; } progress { width: 12rem; }
 #gaps { color: #8a1f17; }
</style></head>
<body>
<h1>Async jobs on redrelay</h1>
<p>The button enqueues jobs with <code>await queue.aput(...)</code>; a worker runs them as
coroutines and publishes progress, shown live. Updates: <span id="status">connecting…</span></p>
<p><label>Jobs <input id="count" type="number" min="1" max="50" value="5"></label>
<button id="go">Enqueue jobs</button></p>
<p id="gaps"></p>
<table><thead><tr><th>job</th><th>progress</th><th>worker · attempt</th></tr></thead>
<tbody id="jobs"></tbody></table>
<h2>Finished (durable topic: survives a reload)</h2>
<ol id="done"></ol>
<script>
const rows = {};
const source = new EventSource("/events/progress");
source.onopen = () => { document.getElementById("status").textContent = "live"; };
source.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
source.addEventListener("gap", (e) => {
  document.getElementById("gaps").textContent = "Some updates were lost: " + JSON.parse(e.data).reason;
});
source.addEventListener("progress", (e) => {
  const p = JSON.parse(e.data), key = p.run + ":" + p.job;
  let row = rows[key];
  if (!row) {
    row = rows[key] = document.createElement("tr");
    row.innerHTML = "<td></td><td><progress></progress></td><td></td>";
    document.getElementById("jobs").appendChild(row);
  }
  row.cells[0].textContent = p.job + " of " + p.of;
  row.querySelector("progress").max = p.steps;
  row.querySelector("progress").value = p.step;
  row.cells[2].textContent = p.worker + " · " + p.attempt;
});
const done = new EventSource("/topics/done");
done.addEventListener("done", (e) => {
  const p = JSON.parse(e.data), item = document.createElement("li");
  item.textContent = "run " + p.run + ", job " + p.job + " of " + p.of + " (" + e.lastEventId + ")";
  document.getElementById("done").appendChild(item);
});
document.getElementById("go").onclick = async () => {
  const count = Number(document.getElementById("count").value);
  await fetch("/jobs", {method: "POST", headers: {"content-type": "application/json"},
                        body: JSON.stringify({count: count, steps: 5})});
};
</script>
</body></html>
"""
