"""Helpers for the Flask tests (and the browser tests): worker subprocesses and
readers of event streams."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ...processes import ROOT, SRC, Process
from ...processes import wait_for as _wait_for

#: The example app, as ``flask --app`` and ``redrelay worker`` name it.
EXAMPLE = "examples.flask_app.app"


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = ""
) -> Any:
    """:func:`tests.worker.helpers.wait_for` with this module's default timeout."""
    return _wait_for(predicate, timeout, what=what)


def example_env(url: str, namespace: str, **settings: Any) -> dict[str, str]:
    """The environment of an example-app process: Redis URL, namespace, ``FLASK_*``
    settings (read by ``app.config.from_prefixed_env()``), ``REDRELAY_*`` cleared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDRELAY_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(SRC)]),
            "FLASK_REDRELAY_URL": url,
            "FLASK_REDRELAY_NAMESPACE": namespace,
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in settings.items():
        env[f"FLASK_{key}"] = orjson.dumps(value).decode()
    return env


class WorkerProcess(Process):
    """A real worker of the example app: ``flask relay worker`` or ``redrelay worker``."""

    def __init__(self, command: str, env: dict[str, str], *extra: str) -> None:
        if command == "flask":
            args = ["-m", "flask", "--app", EXAMPLE, "relay", "worker", *extra]
        else:
            args = ["-m", "redrelay", "worker", f"{EXAMPLE}:relay"]
        super().__init__(args, env, name=f"{command}-worker")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the worker logged that it runs (it has joined its queues)."""
        self.wait_output("ready", timeout)


def parse_events(chunk: bytes) -> list[dict[str, Any]]:
    """The events in a chunk of SSE frames (comments and retry-only blocks skipped);
    ``json`` holds the decoded data when it is JSON."""
    events = []
    for block in chunk.decode().split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            event[name] = event[name] + "\n" + value if name in event else value
        if "data" in event:
            try:
                event["json"] = orjson.loads(event["data"])
            except orjson.JSONDecodeError:
                pass
            events.append(event)
        elif "event" in event:
            events.append(event)
    return events


class EventReader:
    """Reads an SSE response body on a thread and keeps the events, for ``wait_for``.

    ``body`` is the response's iterable (``response.response`` of the Flask test
    client); it is closed by the reading thread when ``close()`` is called, within a
    keep-alive interval.
    """

    def __init__(self, body: Iterable[Any]) -> None:
        self._body = body
        self._iter = iter(body)
        first = next(self._iter)  # the opening frame: subscribed from here on
        assert first.startswith(b": redrelay channel"), first
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for chunk in self._iter:
                with self._lock:
                    self.events.extend(parse_events(chunk))
                if self._stop.is_set():
                    break
        finally:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def json(self, event: str | None = None) -> list[Any]:
        """The JSON data of the events of one type (None: unnamed ``message`` events)."""
        return [e.get("json") for e in self.snapshot() if e.get("event") == event]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the event stream did not end"
