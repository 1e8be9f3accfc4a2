"""The Flask blueprint and the ASGI app serve the same core."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import httpx
from flask import Flask

from redrelay import Relay
from redrelay.contrib.flask import RedRelay
from redrelay.dashboard.asgi import app as asgi_app
from redrelay.dashboard.flask import blueprint


def test_flask_blueprint_under_a_prefix(
    redrelay_url: str, make_relay: Callable[..., Relay]
) -> None:
    ns = make_relay().namespace
    app = Flask(__name__)
    app.config.update(REDRELAY_URL=redrelay_url, REDRELAY_NAMESPACE=ns)
    broker = RedRelay(app)
    token = secrets.token_urlsafe(24)
    app.register_blueprint(blueprint(broker, token=token), url_prefix="/relay")
    broker.relay_for(app).queue("jobs").put({"html": "<img src=x onerror=alert(1)>"})
    client = app.test_client()
    assert client.get("/relay/").status_code == 401  # no anonymous access by default
    auth = {"Authorization": f"Bearer {token}"}
    page = client.get("/relay/queues/jobs", headers=auth)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img" not in text
    assert 'href="/relay/static/dashboard.css"' in text
    assert client.get("/relay/static/dashboard.js", headers=auth).status_code == 200
    overview = client.get("/relay/api/overview", headers=auth).get_json()
    assert [q["name"] for q in overview["queues"]] == ["jobs"]
    app.extensions["redrelay_dashboard"]["redrelay_dashboard"].close()
    broker.relay_for(app).close()


def test_asgi_app(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    relay.queue("jobs").put(1)
    app = asgi_app(relay, anonymous=True)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as client:
            r = await client.get("/api/overview")
            assert r.status_code == 200 and r.json()["queues"][0]["ready"] == 1
            page = await client.get("/queues/jobs")
            assert page.status_code == 200 and "Queue jobs" in page.text
            assert page.headers["content-security-policy"].startswith("default-src")
        remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 5555))
        async with httpx.AsyncClient(
            transport=remote, base_url="http://testserver"
        ) as client:
            assert (await client.get("/")).status_code == 401

    asyncio.run(main())
    app.dashboard.close()  # type: ignore[attr-defined]


def test_flask_example_mounts_the_dashboard(
    redrelay_url: str, make_relay: Callable[..., Relay]
) -> None:
    from examples.flask_app.app import broker, create_app

    ns = make_relay().namespace
    app = create_app({"REDRELAY_URL": redrelay_url, "REDRELAY_NAMESPACE": ns})
    broker.relay_for(app).queue("jobs").put({"n": 1})
    client = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}
    page = client.get("/relay/", environ_base=local)
    assert (
        page.status_code == 200
        and 'data-q="jobs" data-f="ready">1<' in page.get_data(as_text=True)
    )
    assert (
        client.get("/relay/", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code
        == 401
    )
    app.extensions["redrelay_dashboard"]["redrelay_dashboard"].close()
    broker.relay_for(app).close()


def test_bad_arguments_say_what_to_do(make_relay: Callable[..., Relay]) -> None:
    import pytest

    from redrelay import monitor
    from redrelay.dashboard import Dashboard

    relay = make_relay()
    with pytest.raises(
        ValueError, match=r"token= must be a str of at least 16 .*secrets"
    ):
        Dashboard(relay, token="short")
    with pytest.raises(
        TypeError, match="takes a Relay or a RedRelay extension, not str"
    ):
        blueprint("redis://localhost")
    with pytest.raises(ValueError, match="outcome must be one of acked, retried"):
        monitor.queue_history(relay, "jobs", "done")
