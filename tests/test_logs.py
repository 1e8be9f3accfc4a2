"""Rate-limited outage lines (issue 16, item 4)."""

from __future__ import annotations

import logging

import pytest

from redrelay._logs import RateLimited


def test_repeats_are_held_back_and_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("redrelay._logs.time.monotonic", lambda: clock[0])
    limited = RateLimited(logging.getLogger("redrelay.test"), interval=30)
    caplog.set_level(logging.WARNING, "redrelay.test")
    for _ in range(50):  # an outage: 50 attempts a second, for two queues
        limited.warning("a", "queue %s: Redis unavailable", "a")
        limited.warning("b", "queue %s: Redis unavailable", "b")
        clock[0] += 0.02
    assert [r.getMessage() for r in caplog.records] == [
        "queue a: Redis unavailable",
        "queue b: Redis unavailable",
    ]
    clock[0] += 30
    limited.warning("a", "queue %s: Redis unavailable", "a")
    assert caplog.records[-1].getMessage() == (
        "queue a: Redis unavailable (49 similar lines in the last 31s not shown)"
    )
