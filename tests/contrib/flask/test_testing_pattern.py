"""The documented Flask test pattern (docs/flask.md, Testing), as a user would write it:
an app factory, the plugin's ``redrelay_url`` and ``redrelay_namespace`` (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from redrelay import DrainFailed, Message
from redrelay.contrib.flask import RedRelay
from redrelay.contrib.sse import hub_for

broker = RedRelay()
sent: list[Any] = []
heard: list[Any] = []


@broker.consumer("emails")
def send_email(message: Message) -> None:
    if message.body["to"] == "nobody":
        raise ValueError("no such address")
    sent.append(message.body["to"])
    broker.relay.publish("signups", message.body["to"])


@broker.subscriber("signups")
def on_signup(message: Message) -> None:
    heard.append(message.body)


def create_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    broker.init_app(app)

    @app.post("/signup/<to>")
    def signup(to: str) -> str:
        broker.relay.queue("emails").put({"to": to}, dedup_key=f"welcome:{to}")
        return "ok"

    return app


@pytest.fixture
def app(redrelay_url: str, redrelay_namespace: str) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "REDRELAY_URL": redrelay_url,
            "REDRELAY_NAMESPACE": redrelay_namespace,  # this test's own keys
        }
    )
    yield app
    relay = broker.relay_for(app)
    hub_for(relay).close()
    relay.close()


@pytest.mark.parametrize("run", [1, 2])
def test_signup_sends_a_welcome_email(app: Flask, run: int) -> None:
    sent.clear()
    heard.clear()
    app.test_client().post("/signup/ada")  # the same dedup key in both runs
    broker.relay_for(app).drain()
    assert sent == ["ada"]
    assert heard == ["ada"]  # the channel subscriber ran too


def test_a_failing_handler_fails_the_drain(app: Flask) -> None:
    app.test_client().post("/signup/nobody")
    with pytest.raises(DrainFailed, match="no such address"):
        broker.relay_for(app).drain()
