"""Issue 16, item 4: during a Redis outage the worker's repeated lines are rate-limited,
and it carries on by itself when Redis is back."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from redrelay import Relay

from .helpers import wait_for
from .test_exit import ExitWorker

#: Seconds of outage the test waits through (the issue counted 308 lines in 24 s: about
#: 50 in this long, were the lines not held back).
OUTAGE = 4.0


def test_an_outage_is_told_in_a_few_lines_and_the_worker_resumes(
    redis_server_factory: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = redis_server_factory()
    relay = Relay(server.url, namespace="outage")
    worker = ExitWorker(server.url, "outage", "SystemExit")
    try:
        wait_for(lambda: "ready" in worker.output(), timeout=30, what="ready")
        server.kill()
        time.sleep(OUTAGE)
        during = worker.output().split("ready", 1)[1]
        lines = [ln for ln in during.splitlines() if re.search(r"WARNING|ERROR", ln)]
        server.start()
        relay.queue("se").put({"n": 1})
        wait_for(
            lambda: relay.connection.call("GET", "outage:test:count:se") == b"1",
            timeout=30,
            what="a message after the outage",
        )
        assert worker.proc.poll() is None
    finally:
        worker.close()
        relay.close()
    # 2 queues, 2 topic groups and channel subscribers: one line per kind of repeat
    # (fetches, heartbeats, the listener ...), not one per attempt.
    with capsys.disabled():
        print(
            f"\n{len(lines)} WARNING/ERROR lines in a {OUTAGE:g} s outage",
            file=sys.stderr,
        )
    assert 0 < len(lines) <= 20, "\n".join(lines)
    assert "Traceback" not in during
    # The topic keeper lived through it (it used to die of the first BrokerUnavailable).
    assert any("topic events/topic: heartbeat failed" in ln for ln in lines)
