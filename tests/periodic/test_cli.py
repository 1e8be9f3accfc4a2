"""``redrelay schedules`` (list, pause, resume, trigger, remove) and the schedules in
``stats``, through click's CliRunner on the real server; a real worker with
``--no-scheduler`` fires nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
from click.testing import CliRunner

from redrelay import Relay
from redrelay.cli import cli
from redrelay.worker.periodic import Scheduler

from ..processes import Worker, wait_for

MakeRelay = Callable[..., Relay]


def run(relay: Relay, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--url", str(relay.url), "--namespace", relay.namespace, *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def fail(relay: Relay, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--url", str(relay.url), "--namespace", relay.namespace, *args]
    )
    assert result.exit_code == 2, result.output
    return result.output


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_list_pause_resume_trigger_remove(make_relay: MakeRelay) -> None:
    relay = make_relay()
    assert "no schedules in namespace" in run(relay, "schedules")
    relay.schedule(
        "nightly", "30 2 * * *", queue="reports", tz="Europe/Berlin", body={"k": 1}
    )
    clock = [ms("2026-03-28T12:00:00Z")]
    scheduler = Scheduler(relay, clock=lambda: clock[0])
    scheduler.run_once()
    clock[0] = ms("2026-03-29T01:00:05Z")  # 03:00 CEST: the skipped 02:30 fires now
    scheduler.run_once()

    text = run(relay, "schedules")
    assert "nightly" in text and "30 2 * * *" in text and "Europe/Berlin" in text
    assert "2026-03-29T01:00:00Z" in text  # last tick
    assert "2026-03-30 02:30:00 CEST" in text and "2026-03-30T00:30:00Z" in text  # next
    [data] = orjson.loads(run(relay, "schedules", "--json"))
    assert data["name"] == "nightly" and data["fired"] == 1 and data["missed"] == 0
    assert data["last_utc"] == "2026-03-29T01:00:00Z" and data["paused"] is False
    assert data["lag"] is not None and data["last_id"]

    assert "paused 'nightly'" in run(relay, "schedules", "pause", "nightly")
    assert orjson.loads(run(relay, "schedules", "--json"))[0]["paused"] is True
    assert "resumed" in run(relay, "schedules", "resume", "nightly")
    assert orjson.loads(run(relay, "schedules", "--json"))[0]["paused"] is False

    # trigger: the CLI leaves a request; a running scheduler serves it.
    scheduler.start()
    try:
        out = run(relay, "schedules", "trigger", "nightly")
    finally:
        scheduler.stop()
    assert "a worker enqueued it" in out
    messages = relay.queue("reports").peek(10)
    assert [m.headers.get("triggered") for m in messages] == [None, "1"]
    assert orjson.loads(run(relay, "schedules", "--json"))[0]["next_utc"] == (
        "2026-03-30T00:30:00Z"  # the trigger consumed no tick
    )

    assert "no schedule 'other'" in fail(relay, "schedules", "pause", "other")
    # stats shows them as a table, and in the --json --topics object.
    assert "nightly" in run(relay, "stats")
    payload = orjson.loads(run(relay, "stats", "--json", "--topics"))
    assert [s["name"] for s in payload["schedules"]] == ["nightly"]
    assert isinstance(orjson.loads(run(relay, "stats", "--json")), list)

    assert "removed 'nightly'" in run(relay, "schedules", "remove", "nightly")
    assert "no schedules" in run(relay, "schedules")
    assert "no schedule 'nightly'" in fail(relay, "schedules", "remove", "nightly")


def test_no_scheduler_worker_fires_nothing(
    make_relay: MakeRelay, redrelay_url: str
) -> None:
    relay = make_relay()
    env = {"TEST_NAMESPACE": relay.namespace}
    target = "tests.apps.periodic_app:relay"
    off = Worker(target, redrelay_url, "--no-scheduler", env=env, name="no-scheduler")
    # --no-scheduler and nothing else to run: it says so and exits.
    assert off.wait(30) != 0
    assert "nothing to run" in off.output()
    assert relay.queue("ticks").stats().ready == 0
    on = Worker(target, redrelay_url, env=env, name="scheduler")
    wait_for(lambda: relay.queue("ticks").stats().ready >= 2, timeout=30)
    assert on.stop(30) == 0
