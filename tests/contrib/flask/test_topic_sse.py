"""A durable topic over server-sent events through the Flask blueprint: resume after
``Last-Event-ID`` (the real Flask test client, a real redis-server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask

from redrelay.contrib.flask import RedRelay

from .conftest import MakeApp
from .helpers import parse_events


def _app(make_app: MakeApp, **blueprint: Any) -> tuple[Flask, RedRelay]:
    ext = RedRelay()
    app = make_app(ext)
    app.register_blueprint(ext.sse_blueprint(**blueprint))
    return app, ext


def _events(body: Iterator[bytes], count: int) -> list[dict[str, Any]]:
    """Read frames until ``count`` message events arrived (keep-alives come every 0.2 s)."""
    events: list[dict[str, Any]] = []
    for _ in range(200):
        events += [e for e in parse_events(next(body)) if "id" in e or "event" in e]
        if len([e for e in events if "id" in e]) >= count:
            break
    return events


def test_topic_stream_resumes_after_last_event_id(make_app: MakeApp) -> None:
    app, ext = _app(make_app)
    with app.app_context():
        ids = ext.relay.topic("orders").publish_many([{"n": 1}, {"n": 2}, {"n": 3}])
    response = app.test_client().get(
        "/events/topics/orders", buffered=False, headers={"Last-Event-ID": ids[0]}
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    body = iter(response.response)
    opening = next(body)
    assert b"redrelay topic orders" in opening and b"retry:" in opening
    events = _events(body, 2)  # type: ignore[arg-type]
    assert [(e["id"], e["json"]) for e in events] == [
        (ids[1], {"n": 2}),
        (ids[2], {"n": 3}),
    ]
    # live: what is published now arrives, with its stream id as the event id
    with app.app_context():
        sid = ext.relay.topic("orders").publish({"n": 4}, headers={"event": "order"})
    (live,) = _events(body, 1)  # type: ignore[arg-type]
    assert (live["id"], live["event"], live["json"]) == (sid, "order", {"n": 4})
    response.close()


def test_topic_stream_without_last_event_id_starts_now(make_app: MakeApp) -> None:
    app, ext = _app(make_app)
    with app.app_context():
        ext.relay.topic("orders").publish({"n": "old"})
    response = app.test_client().get("/events/topics/orders", buffered=False)
    body = iter(response.response)
    next(body)  # the opening: the position is fixed now
    with app.app_context():
        sid = ext.relay.topic("orders").publish({"n": "new"})
    (event,) = _events(body, 1)  # type: ignore[arg-type]
    assert (event["id"], event["json"]) == (sid, {"n": "new"})
    response.close()


def test_topic_stream_reports_entries_trimmed_while_away(make_app: MakeApp) -> None:
    app, ext = _app(make_app)
    with app.app_context():
        topic = ext.relay.topic("orders", maxlen=10)
        first = topic.publish({"n": 0})
        topic.publish_many([{"n": n} for n in range(1, 1000)])
        kept = topic.stats().length
    response = app.test_client().get(
        "/events/topics/orders", buffered=False, headers={"Last-Event-ID": first}
    )
    body = iter(response.response)
    (gap,) = [e for e in parse_events(next(body)) if e.get("event") == "gap"]  # type: ignore[arg-type]
    assert "trimmed" in gap["json"]["reason"]
    events = _events(body, kept)  # type: ignore[arg-type]
    assert [e["json"]["n"] for e in events] == list(range(1000 - kept, 1000))
    response.close()


def test_topic_stream_authorize_and_bad_names(make_app: MakeApp) -> None:
    asked: list[str] = []

    def authorize(name: str) -> bool:
        asked.append(name)
        return name == "topics/public"

    app, _ = _app(make_app, authorize=authorize)
    client = app.test_client()
    assert client.get("/events/topics/private").status_code == 403
    assert client.get("/events/topics/-bad").status_code == 404
    ok = client.get("/events/topics/public", buffered=False)
    assert ok.status_code == 200
    ok.close()
    assert asked == ["topics/private", "topics/public"]


def test_extension_topic_subscriber_runs_in_the_app_context(make_app: MakeApp) -> None:
    from flask import current_app

    ext = RedRelay()
    seen: list[tuple[str, object]] = []

    @ext.subscriber("orders", group="billing", start="beginning", retries=1)
    def bill(message: Any) -> None:
        seen.append((current_app.config["MARK"], message.body))

    app = make_app(ext, MARK="app")
    relay = ext.relay_for(app)
    assert relay.topic_subscribers[0].options.retries == 1
    relay.topic("orders").publish("order-1")
    relay.drain(timeout=10)
    assert seen == [("app", "order-1")]
