"""The seed's Flask scenario made reliable: a form enqueues jobs, a worker runs them,
and the page shows their progress live.

The seed did ``r.lpush("queue", "hello")`` in the web app and ``r.brpop("queue")`` in a
consumer, which loses the message if the consumer dies while processing it. Here the
form puts jobs on the ``jobs`` queue; a worker process runs them (a killed worker's
jobs come back to the queue once its lease expires, and run again); each job publishes
its progress on the ``progress`` channel, which the page reads over server-sent events.

Run it on the embedded Redis, with a worker and the development server::

    scripts/example-flask                                  # then open http://127.0.0.1:5000

or by hand, in two terminals::

    flask --app examples.flask_app.app relay worker
    flask --app examples.flask_app.app run

``redrelay worker examples.flask_app.app:relay`` runs the same worker through the
``redrelay`` command. Settings come from ``FLASK_*`` environment variables
(``FLASK_REDRELAY_URL=redis://...``, ``FLASK_REDRELAY_LEASE=2`` ...) or ``$REDRELAY_URL``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, abort, jsonify, redirect, render_template, request
from werkzeug.wrappers import Response

from redrelay import Message, Relay
from redrelay.contrib.flask import RedRelay
from redrelay.dashboard.flask import blueprint as dashboard_blueprint

#: The queue of jobs, and the channels the page may watch.
JOBS = "jobs"
PROGRESS = "progress"
NOTIFICATIONS = "notifications"
PUBLIC_CHANNELS = frozenset({PROGRESS, NOTIFICATIONS})
#: Most jobs one form submission may enqueue.
MAX_JOBS = 50

broker = RedRelay()
pages = Blueprint("pages", __name__)


@broker.consumer(JOBS, concurrency=2)
def run_job(message: Message) -> None:
    """Do a job in steps, publishing progress after each (inside the app context).

    A job that was running when its worker died is delivered again (``attempt`` 2)
    and starts over: handlers must be safe to run twice.
    """
    job = message.body
    progress = {
        "run": job["run"],
        "job": job["job"],
        "of": job["of"],
        "steps": job["steps"],
        "attempt": message.attempt,
        "worker": os.getpid(),
    }
    for step in range(1, job["steps"] + 1):
        time.sleep(job["delay"])
        broker.publish(
            PROGRESS, {**progress, "step": step}, headers={"event": "progress"}
        )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory (``flask --app examples.flask_app.app`` finds it)."""
    app = Flask(__name__)
    app.config.from_mapping(
        REDRELAY_NAMESPACE="flask-example",
        # No REDRELAY_URL: the embedded development redis-server, asked for explicitly
        # (outside debug and testing a missing URL is an error otherwise). Its data
        # lives in this app's instance folder; FLASK_REDRELAY_URL=redis://... wins.
        REDRELAY_EMBEDDED=True,
        EXAMPLE_STEPS=5,
        EXAMPLE_STEP_SECONDS=0.4,
    )
    app.config.from_prefixed_env()  # FLASK_REDRELAY_URL, FLASK_REDRELAY_LEASE ...
    if config:
        app.config.update(config)
    broker.init_app(app)
    # Authorization is the app's: these two channels are public, any other is 403.
    app.register_blueprint(
        broker.sse_blueprint(authorize=lambda channel: channel in PUBLIC_CHANNELS)
    )
    app.register_blueprint(pages)
    # The operator's dashboard at /relay/: browsers on this machine only (a development
    # example); a deployed app passes auth= (its own login) or token= instead.
    app.register_blueprint(
        dashboard_blueprint(broker, anonymous=True), url_prefix="/relay"
    )
    return app


def relay() -> Relay:
    """The target of ``redrelay worker examples.flask_app.app:relay``.

    The relay of a new app, so its handlers run in that app's context.
    """
    return broker.relay_for(create_app())


@pages.get("/")
def index() -> str:
    return render_template("index.html", max_jobs=MAX_JOBS)


@pages.post("/jobs")
def enqueue_jobs() -> Response | tuple[Response, int]:
    """Put ``count`` jobs on the queue in one round trip (the seed's ``LPUSH``)."""
    from flask import current_app

    count = _int_field("count", 5, 1, MAX_JOBS)
    steps = _int_field("steps", current_app.config["EXAMPLE_STEPS"], 1, 100)
    delay = float(request.form.get("delay", current_app.config["EXAMPLE_STEP_SECONDS"]))
    if not 0 <= delay <= 10:
        abort(400, "delay must be from 0 to 10 seconds")
    run = secrets.token_hex(4)
    jobs = [
        {"run": run, "job": n, "of": count, "steps": steps, "delay": delay}
        for n in range(1, count + 1)
    ]
    ids = broker.queue(JOBS).put_many(jobs)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(run=run, count=count, steps=steps, ids=ids), 202
    return redirect("/", code=303)


@pages.post("/notify")
def notify() -> tuple[Response, int]:
    """Publish a notification to every open page (the seed's ``PUBLISH``)."""
    text = request.form.get("text", "").strip()[:200]
    if not text:
        abort(400, "text is required")
    receivers = broker.publish(NOTIFICATIONS, {"text": text})
    return jsonify(receivers=receivers), 202


@pages.get("/stats")
def stats() -> Response:
    """The jobs queue's depths and counters, for the page's status line."""
    return jsonify(dataclasses.asdict(broker.queue(JOBS).stats()))


def _int_field(name: str, default: int, low: int, high: int) -> int:
    raw = request.form.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"{name} must be a whole number")
    if not low <= value <= high:
        abort(400, f"{name} must be from {low} to {high}")
    return value
