"""docs/results.md's Flask example: enqueue in a view, then read status and result."""

from __future__ import annotations

from typing import Any

from flask import Flask

from redrelay import Message, Status
from redrelay.contrib.flask import RedRelay

from .conftest import MakeApp


def test_enqueue_then_status_then_result(make_app: MakeApp) -> None:
    broker = RedRelay()

    @broker.consumer("reports", result_ttl=3600)
    def render(message: Message) -> dict[str, Any]:
        return {"url": f"/files/{message.body['report_id']}.pdf"}

    app: Flask = make_app(broker)

    @app.post("/reports/<int:report_id>")
    def start(report_id: int) -> tuple[dict[str, str], int]:
        return {"id": broker.queue("reports").put({"report_id": report_id})}, 202

    @app.get("/reports/status/<msg_id>")
    def status(msg_id: str) -> dict[str, Any]:
        q = broker.queue("reports")
        state = q.status(msg_id)
        body: dict[str, Any] = {"status": state.value}
        if state is Status.SUCCEEDED:
            body["result"] = q.result(msg_id, timeout=0)
        return body

    client = app.test_client()
    msg_id = client.post("/reports/7").get_json()["id"]
    assert client.get(f"/reports/status/{msg_id}").get_json() == {"status": "queued"}
    broker.relay_for(app).drain(["reports"], timeout=10)
    assert client.get(f"/reports/status/{msg_id}").get_json() == {
        "status": "succeeded",
        "result": {"url": "/files/7.pdf"},
    }
