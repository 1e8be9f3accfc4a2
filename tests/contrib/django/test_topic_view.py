"""The SSE view streaming a durable topic (Django test client), resuming after Last-Event-ID."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from redrelay import Relay

from .test_views import Reader


@pytest.fixture(autouse=True)
def quick_keepalive(settings: Any) -> None:
    settings.REDRELAY = {
        alias: {**config, "SSE_KEEPALIVE": 0.2}
        for alias, config in settings.REDRELAY.items()
    }


def test_topic_view_resumes_after_last_event_id(app_relay: Relay) -> None:
    ids = app_relay.topic("orders").publish_many(["a", "b", "c"])
    response = Client().get("/topics/orders/", HTTP_LAST_EVENT_ID=ids[0])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    reader = Reader(iter(response.streaming_content))
    frames = reader.until(f"id: {ids[2]}".encode())
    assert f"id: {ids[0]}".encode() not in frames
    assert f'id: {ids[1]}\ndata: "b"'.encode() in frames
    sid = app_relay.topic("orders").publish("d")
    assert f'id: {sid}\ndata: "d"'.encode() in reader.until(f"id: {sid}".encode())
    response.close()


def test_invalid_topic_is_404() -> None:
    assert Client().get("/topics/a*b/").status_code == 404
