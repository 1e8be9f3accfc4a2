"""Periodic jobs in Flask: ``@broker.periodic`` runs in an app context, ``flask relay
schedules`` lists and steers them."""

from __future__ import annotations

import threading

import orjson
from flask import current_app

from redrelay import Message
from redrelay.contrib.flask import RedRelay

from .conftest import MakeApp


def test_periodic_handler_and_flask_relay_schedules(make_app: MakeApp) -> None:
    ext = RedRelay()
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    @ext.periodic("* * * * * *", name="beat")
    def beat(message: Message) -> None:
        seen.append((current_app.name, message.headers["scheduled_for"]))
        done.set()

    ext.schedule("report", "0 3 * * *", queue="reports", tz="Europe/Berlin")
    app = make_app(ext)
    relay = ext.relay_for(app)
    relay.start()
    try:
        assert done.wait(20)
    finally:
        relay.stop()
    assert seen[0][0] == "testapp" and seen[0][1].endswith("Z")

    runner = app.test_cli_runner()
    result = runner.invoke(args=["relay", "schedules", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in orjson.loads(result.output)}
    assert set(rows) == {"beat", "report"}
    assert rows["report"]["tz"] == "Europe/Berlin" and rows["beat"]["fired"] >= 1
    result = runner.invoke(args=["relay", "schedules", "pause", "report"])
    assert result.exit_code == 0 and "paused 'report'" in result.output
    result = runner.invoke(args=["relay", "schedules"])
    assert "report" in result.output and "yes" in result.output
