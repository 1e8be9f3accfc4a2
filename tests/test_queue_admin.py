"""Purging and deleting a queue (API and CLI), and the warning about queues nobody
consumes (``stats``, ``doctor``): issue 16, item 13."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from redrelay import ConfigurationError, Message, Relay
from redrelay.cli import cli

from .processes import wait_for


def redrelay(relay: Relay, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        ["--url", relay.url or "", "--namespace", relay.namespace, *args],
        input=input,
    )


def keys_of(relay: Relay, queue: str) -> list[bytes]:
    found: list[bytes] = relay.connection.call("KEYS", f"{relay.namespace}:{{{queue}*")
    return found


def test_purge_deletes_ready_messages_only(relay: Relay) -> None:
    q = relay.queue("emails")
    q.put_many([1, 2, 3])
    q.put(4, delay=60)
    done = q.purge()
    assert (done.ready, done.delayed) == (0 + 3, 0)
    stats = q.stats()
    assert (stats.ready, stats.delayed) == (0, 1)
    assert stats.counters["purged"] == 3
    assert q.purge(delayed=True).delayed == 1
    assert q.stats().delayed == 0
    q.put(5)  # the queue still works
    assert q.stats().ready == 1


def test_delete_removes_every_key_and_the_name(relay: Relay) -> None:
    q = relay.queue("emials")
    q.put_many([1, 2])
    q.put(3, delay=60)
    relay.queue("emails").put(0)
    assert keys_of(relay, "emials")
    assert q.delete() == 3
    assert keys_of(relay, "emials") == []
    assert [s.name for s in relay.stats()] == ["emails"]
    q.put(4)  # comes back when used again, registered again
    assert [s.name for s in relay.stats()] == ["emails", "emials"]


def test_delete_removes_the_keys_of_priorities_limits_and_results(
    relay: Relay,
) -> None:
    """Every structure a queue may have: priority entries, entries parked by a per-key
    limit, the limits' buckets and slots, results and their running and cancel sets."""

    @relay.consumer("mixed", result_ttl=60, rate_limit="1000/s", limit_key="tenant",
                    concurrency_limit=2, retries=0)  # fmt: skip
    def handle(message: Message) -> int:
        return 1

    q = relay.queue("mixed")
    q.put_many([1, 2])
    q.put(3, priority=5)
    q.put(4, priority=-5)
    q.put(5, headers={"tenant": "a"})
    cancelled = q.put(6)
    assert q.cancel(cancelled)
    relay.drain(timeout=10)
    q.put(7, priority=9)  # left queued, in the priority set
    assert keys_of(relay, "mixed")
    assert q.delete() == 1
    # Only the records of tracked messages stay, to expire on their own (docs/results.md).
    assert [k for k in keys_of(relay, "mixed") if b":job:" not in k] == []
    q.put(8)  # a new queue of that name starts empty: nothing comes back
    stats = q.stats()
    assert (stats.ready, stats.delayed, stats.dead) == (1, 0, 0)


def test_delete_a_sharded_queue(relay: Relay) -> None:
    q = relay.queue("hot", shards=3)
    q.put_many(list(range(9)))
    assert q.delete() == 9
    assert keys_of(relay, "hot") == []
    assert relay.stats() == []


def test_delete_refuses_a_queue_with_a_live_consumer_unless_forced(
    make_relay: Callable[..., Relay],
) -> None:
    web = make_relay()
    worker = make_relay(namespace=web.namespace, lease=2.0)
    release = threading.Event()

    @worker.consumer("jobs")
    def hold(message: Message) -> None:
        release.wait(10)

    web.queue("jobs").put(1)
    worker.start()
    try:
        wait_for(lambda: web.queue("jobs").stats().in_flight == 1, 10, what="in flight")
        with pytest.raises(ConfigurationError, match="1 live consumer.*force=True"):
            web.queue("jobs").delete()
        assert web.queue("jobs").stats().in_flight == 1  # nothing was deleted
    finally:
        release.set()
        worker.stop()
    web.queue("jobs").put(2)
    assert web.queue("jobs").delete(force=True) >= 1
    assert keys_of(web, "jobs") == []


def test_cli_queue_purge_and_delete(relay: Relay) -> None:
    q = relay.queue("emails")
    q.put_many([1, 2])
    refused = redrelay(relay, "queue", "purge", "emails", input="n\n")
    assert refused.exit_code == 2
    assert "not confirmed, nothing was changed" in refused.output
    no_terminal = redrelay(relay, "queue", "purge", "emails")  # stdin at EOF
    assert no_terminal.exit_code == 2
    assert "pass -y/--yes" in no_terminal.output
    assert q.stats().ready == 2
    purged = redrelay(relay, "queue", "purge", "emails", input="y\n")
    assert purged.exit_code == 0, purged.output
    assert "purged 2 ready messages of queue 'emails'" in purged.output
    q.put(3)
    deleted = redrelay(relay, "queue", "delete", "emails", "-y")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted queue 'emails' (1 messages)" in deleted.output
    missing = redrelay(relay, "queue", "delete", "emails", "-y")
    assert missing.exit_code == 2 and "no queue 'emails'" in missing.output


def test_stats_and_doctor_warn_about_queues_with_messages_and_no_consumer(
    relay: Relay,
) -> None:
    @relay.consumer("emails")
    def send(message: Message) -> None:
        pass

    relay.start()
    try:
        wait_for(lambda: relay.queue("emails").stats().consumers == 1, 10)
        relay.queue("emials").put({"to": "ada@example.com"})  # the typo
        for command in ("stats", "doctor"):
            result = redrelay(relay, command)
            assert result.exit_code == 0, result.output
            warnings = [
                w for w in result.output.splitlines() if w.startswith("warning:")
            ]
            assert any(
                "queue 'emials' has 1 message(s) waiting and no consumer" in w
                and "a typo of 'emails'?" in w
                for w in warnings
            ), result.output
            assert not any("queue 'emails'" in w for w in warnings), result.output
    finally:
        relay.stop()
