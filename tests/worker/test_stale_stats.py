"""Issue 16, item 6: after a SIGKILL, ``stats`` shows the dead consumer's lease as
expired and what it holds as such, and counts only live consumers."""

from __future__ import annotations

import signal
from collections.abc import Callable

from click.testing import CliRunner

from redrelay import Relay
from redrelay.cli import cli

from .helpers import WorkerProcess, runs, wait_for


def test_stats_after_a_sigkill(
    app_relay: Relay,
    redrelay_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    queue = app_relay.queue("work")
    queue.put({"op": "sleep", "s": 30})
    worker = start_worker(TEST_LEASE="1", TEST_CONCURRENCY="1")
    wait_for(lambda: runs(redrelay_url, app_relay.namespace), what="the handler")
    live = queue.stats()
    assert (live.in_flight, live.consumers, live.expired) == (1, 1, 0)
    worker.signal(signal.SIGKILL)
    worker.wait()
    # No worker is left to sweep: the lease runs out and stays there, shown as expired.
    stale = wait_for(lambda: (s := queue.stats()).expired == 1 and s, what="expiry")
    assert (stale.consumers, stale.in_flight, stale.in_flight_expired) == (0, 1, 1)
    result = CliRunner().invoke(
        cli, ["--url", redrelay_url, "--namespace", app_relay.namespace, "stats"]
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("work"))
    assert "1 (1 expired)" in row and "0 +1 expired" in row
    # ...and, no worker being left to hand it back, warned about as waiting.
    assert (
        "warning: queue 'work' has 1 message(s) waiting (1 held by an expired lease) "
        "and no consumer" in result.output
    ), result.output
    # A new worker's sweep hands the delivery back; then nothing is stale.
    rescuer = start_worker(TEST_LEASE="1", TEST_CONCURRENCY="1")
    wait_for(lambda: queue.stats().counters.get("recovered") == 1, what="recovery")
    fresh = queue.stats()
    assert (fresh.expired, fresh.in_flight_expired, fresh.consumers) == (0, 0, 1)
    rescuer.kill()  # it runs the 30 s handler again: a graceful stop would wait for it


def test_topic_stats_show_an_expired_group_lease(app_relay: Relay) -> None:
    from redrelay.worker.topic_leases import GroupLease, create_group

    # A 1 s lease: the first stats() must come before it runs out, even on a loaded
    # machine (0.3 s left little room); the expiry is then waited for.
    @app_relay.subscriber("events", group="g", lease=1.0, heartbeat=0.2)
    def handler(message: object) -> None:
        pass

    (sub,) = app_relay.topic_subscribers
    create_group(app_relay.connection, sub)
    lease = GroupLease(app_relay.connection, sub)
    lease.join()  # a consumer that then dies: nothing renews its lease
    (group,) = app_relay.topic("events").stats().groups
    assert (group.consumers, group.expired) == (1, 0)
    group = wait_for(
        lambda: (g := app_relay.topic("events").stats().groups[0]).expired and g,
        what="expiry",
    )
    assert (group.consumers, group.expired) == (0, 1)
    from redrelay.cli.topics import render_topics

    assert "0 +1 expired" in render_topics([app_relay.topic("events").stats()])
