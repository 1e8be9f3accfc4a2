"""relay_stats, relay_dead, relay_outbox and relay_worker's argument errors, through
call_command."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from redrelay import Relay
from redrelay.contrib.django.models import OutboxMessage
from redrelay.contrib.django.outbox import OUTBOX_MAX_ATTEMPTS
from redrelay.worker.topic_leases import create_group


def run(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def dead_letters(relay: Relay, n: int) -> list[str]:
    """n dead letters on "jobs" (the test app's consumer fails them, retries=1)."""
    ids = [relay.queue("jobs").put({"op": "fail", "n": i}) for i in range(n)]
    relay.drain(["jobs"], raise_on_failure=False)
    assert relay.queue("jobs").stats().dead == n
    return ids


def test_relay_stats(app_relay: Relay) -> None:
    assert "no queues in namespace" in run("relay_stats")
    app_relay.queue("jobs").put(1)
    app_relay.queue("jobs").put(2, delay=60)
    text = run("relay_stats")
    assert "queue" in text and "jobs" in text and "acked" in text
    [row] = [line for line in text.splitlines() if line.startswith("jobs")][:1]
    assert row.split()[1:3] == ["1", "1"]
    [stats] = orjson.loads(run("relay_stats", "jobs", "--json"))
    assert (stats["name"], stats["ready"], stats["delayed"]) == ("jobs", 1, 1)


def test_relay_stats_shows_topic_groups(
    app_relay: Relay, make_relay: Callable[..., Relay]
) -> None:
    side = make_relay(namespace=app_relay.namespace)
    side.subscriber("orders", group="mail")(lambda m: None)
    create_group(side.connection, side.topic_subscribers[0])  # as a worker does
    side.topic("orders").publish_many(["a", "b"])
    text = run("relay_stats")
    # topic group length consumers lag pending
    [row] = [line.split() for line in text.splitlines() if line.startswith("orders")]
    assert row[:6] == ["orders", "mail", "2", "0", "2", "0"]
    assert orjson.loads(run("relay_stats", "--json")) == []  # the list of queues
    payload = orjson.loads(run("relay_stats", "--json", "--topics"))
    [group] = payload["topics"][0]["groups"]
    assert (group["group"], group["lag"], group["pending"]) == ("mail", 2, 0)


def test_relay_stats_of_an_unknown_queue(app_relay: Relay) -> None:
    with pytest.raises(CommandError, match="no queue 'nope'.*known: none"):
        run("relay_stats", "nope")


def test_relay_dead_list_requeue_purge(app_relay: Relay) -> None:
    ids = dead_letters(app_relay, 3)
    text = run("relay_dead", "list", "jobs")
    assert all(i in text for i in ids)
    assert "asked to fail" in text
    assert "Traceback" in run(
        "relay_dead", "list", "jobs", "--traceback", "--limit", "1"
    )
    letters = orjson.loads(run("relay_dead", "list", "jobs", "--json"))
    assert {d["id"] for d in letters} == set(ids)
    assert letters[0]["body"]["op"] == "fail"

    assert run("relay_dead", "requeue", "jobs", ids[0], "nope") == (
        "requeued 1 dead letters of 'jobs' (1 were not dead letters: wrong id, or "
        "already requeued or purged)\n"
    )
    assert app_relay.queue("jobs").stats().ready == 1
    assert "requeued 2 dead letters" in run("relay_dead", "requeue", "jobs", "--all")
    app_relay.drain(["jobs"], raise_on_failure=False)
    assert "purged 3 dead letters" in run(
        "relay_dead", "purge", "jobs", "--all", "--noinput"
    )
    assert "no dead letters" in run("relay_dead", "list", "jobs")


def test_relay_dead_purge_all_asks_first(
    app_relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letters(app_relay, 1)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="purge cancelled"):
        run("relay_dead", "purge", "jobs", "--all")
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    assert "purged 1 dead letters" in run("relay_dead", "purge", "jobs", "--all")


def test_relay_dead_needs_ids_or_all(app_relay: Relay) -> None:
    dead_letters(app_relay, 1)
    with pytest.raises(CommandError, match="or --all"):
        run("relay_dead", "requeue", "jobs")


@pytest.mark.django_db(transaction=True)
def test_relay_outbox(app_relay: Relay) -> None:
    assert run("relay_outbox", "--list") == "the outbox is empty\n"
    OutboxMessage.objects.create(name="jobs", body={"n": 1})
    OutboxMessage.objects.create(name="jobs", body="x" * 2_000_000)
    listing = run("relay_outbox", "--list")
    assert listing.count(" jobs ") == 2
    assert run("relay_outbox") == "sent 1 outbox rows; 1 left\n"
    for _ in range(OUTBOX_MAX_ATTEMPTS):
        out = run("relay_outbox")
    assert "1 failed 5 times: see --list, then --retry" in out
    assert "the limit is" in run("relay_outbox", "--list")
    OutboxMessage.objects.update(body={"n": 2})  # fixed by hand
    assert run("relay_outbox", "--retry") == "sent 1 outbox rows; 0 left\n"
    assert [m.body for m in app_relay.queue("jobs").peek()] == [{"n": 1}, {"n": 2}]


def test_relay_worker_argument_errors() -> None:
    with pytest.raises(CommandError, match="no alias 'nope'"):
        run("relay_worker", "--relay", "nope")
    with pytest.raises(
        CommandError, match="no consumer is registered for queue 'nope'"
    ):
        run("relay_worker", "-q", "nope", "--no-outbox")
    with pytest.raises(CommandError, match="--processes"):
        run("relay_worker", "--processes", "2")
    with pytest.raises(CommandError, match="is not an int from 1 to 1024"):
        run("relay_worker", "--concurrency", "0")
