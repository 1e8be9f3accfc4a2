"""Server warnings at worker start, and the Relay lifecycle."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from redrelay import ConfigurationError, Relay
from redrelay.worker.supervisor import server_warnings

from .helpers import WorkerProcess, wait_for


def test_each_risky_setting_is_one_warning(
    redis_server_factory: Callable[..., Any],
) -> None:
    risky = redis_server_factory(
        appendonly=False, extra_args=["--maxmemory-policy", "allkeys-lru"]
    )
    with Relay(risky.url) as relay:
        lines = server_warnings(relay.connection)
    assert len(lines) == 2
    assert "maxmemory-policy is 'allkeys-lru'" in lines[0]
    assert "no persistence" in lines[1]
    safe = redis_server_factory(appendonly=True)
    with Relay(safe.url) as relay:
        assert server_warnings(relay.connection) == []


def test_worker_logs_the_warnings_at_start(
    app_relay: Relay, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    wait_for(lambda: app_relay.queue("work").stats().consumers == 1, what="worker up")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    out = worker.output()
    assert (
        "Redis has no persistence" in out
    )  # the session's test server runs without AOF
    assert "ready: queues [work]" in out


def test_relay_is_a_context_manager_and_closed_means_closed(redrelay_url: str) -> None:
    with Relay(redrelay_url, namespace="lifecycle") as relay:
        relay.queue("q").stats()
        assert relay._connection is not None
    assert relay._connection is None
    with pytest.raises(ConfigurationError, match="closed"):
        relay.queue("q").put(1)


def test_wiped_redis_is_detected_within_a_second(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    from redrelay.protocol.keys import epoch_key

    relay.consumer("q")(lambda message: None)
    relay.start()
    try:
        runner = relay._runner
        assert runner is not None
        wait_for(
            lambda: relay.connection.call("GET", epoch_key(relay.namespace)),
            what="epoch",
        )
        relay.connection.call(
            "DEL", epoch_key(relay.namespace)
        )  # what a wipe does to it
        wait_for(lambda: runner.epoch.wipes == 1, timeout=5, what="wipe reported")
        # The count goes up just before the line is logged, on the keeper thread.
        wait_for(lambda: "lost its data" in caplog.text, timeout=5, what="wipe logged")
        relay.queue("q").put(1)  # and the worker carries on
        wait_for(
            lambda: relay.queue("q").stats().counters.get("acked") == 1, what="acked"
        )
    finally:
        relay.stop()
