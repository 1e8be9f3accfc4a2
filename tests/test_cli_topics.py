"""Topics on the ``redrelay`` command line: ``stats``, ``topics`` and ``dead <topic>/<group>``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from redrelay import Message, Relay
from redrelay.cli import cli
from redrelay.worker.topic_leases import create_group


@pytest.fixture
def invoke(redrelay_url: str) -> Callable[..., Result]:
    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--url", redrelay_url, *args], input=input)

    return run


def _row(output: str, *first: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


@pytest.fixture
def busy(make_relay: Callable[..., Relay]) -> Relay:
    """A topic with two groups: billing read everything (one dead letter), mail lags 3."""
    relay = make_relay(retries=0)

    @relay.subscriber("orders", group="billing", start="beginning")
    def bill(message: Message) -> None:
        if message.body == "bad":
            raise RuntimeError("declined")

    relay.topic("orders").publish_many(["a", "bad"])
    relay.drain(timeout=10, raise_on_failure=False)
    mail = make_relay(namespace=relay.namespace)
    mail.subscriber("orders", group="mail")(lambda m: None)
    create_group(mail.connection, mail.topic_subscribers[0])  # as a worker does
    relay.topic("orders").publish_many(["c", "d", "e"])
    return relay


def test_stats_and_topics_show_lag_pending_and_dead(
    busy: Relay, invoke: Callable[..., Result]
) -> None:
    result = invoke("--namespace", busy.namespace, "stats")
    assert result.exit_code == 0, result.output
    # topic group length consumers lag pending retrying dead acked retried dead ...
    assert _row(result.output, "orders", "billing")[2:8] == [
        "5",
        "0",
        "3",
        "0",
        "0",
        "1",
    ]
    assert _row(result.output, "orders", "mail")[2:8] == ["5", "0", "3", "0", "0", "0"]
    as_json = invoke("--namespace", busy.namespace, "topics", "--json")
    assert as_json.exit_code == 0, as_json.output
    (orders,) = json.loads(as_json.output)
    assert orders["name"] == "orders" and orders["length"] == 5
    billing = {g["group"]: g for g in orders["groups"]}["billing"]
    assert billing["counters"] == {"acked": 1, "dead": 1}
    unknown = invoke("--namespace", busy.namespace, "topics", "nope")
    assert unknown.exit_code == 2 and "no topic 'nope'" in unknown.output


def test_dead_letters_of_a_topic_group(
    busy: Relay, invoke: Callable[..., Result]
) -> None:
    ns = busy.namespace
    listed = invoke("--namespace", ns, "dead", "list", "orders/billing")
    assert listed.exit_code == 0, listed.output
    assert "failed 1 times (retries=0)" in listed.output and "declined" in listed.output
    assert (
        "no group 'nope'"
        in invoke("--namespace", ns, "dead", "list", "orders/nope").output
    )
    requeued = invoke("--namespace", ns, "dead", "requeue", "orders/billing", "--all")
    assert requeued.exit_code == 0, requeued.output
    assert "requeued 1 dead letters" in requeued.output
    assert busy.topic("orders").dead_letters("billing") == []
    busy.drain(timeout=10, raise_on_failure=False)  # fails again: dead again
    purged = invoke("--namespace", ns, "dead", "purge", "orders/billing", "--all", "-y")
    assert purged.exit_code == 0, purged.output
    assert "purged 1 dead letters" in purged.output


def test_stats_json_keeps_the_queue_list_and_adds_topics_on_request(
    busy: Relay, invoke: Callable[..., Result]
) -> None:
    busy.queue("work").put(1)
    ns = busy.namespace
    plain = invoke("--namespace", ns, "stats", "--json")
    assert plain.exit_code == 0, plain.output
    # Scripts read the old shape: a list whose items are all queues.
    assert [q["name"] for q in json.loads(plain.output)] == ["work"]
    both = invoke("--namespace", ns, "stats", "--json", "--topics")
    assert both.exit_code == 0, both.output
    payload = json.loads(both.output)
    assert [q["name"] for q in payload["queues"]] == ["work"]
    (old,) = json.loads(plain.output)
    assert payload["queues"][0].keys() == old.keys() and old["ready"] == 1
    # The topics are those of `redrelay topics --json`.
    topics = invoke("--namespace", ns, "topics", "--json")
    assert payload["topics"] == json.loads(topics.output)
    groups = {g["group"]: g for g in payload["topics"][0]["groups"]}
    assert (groups["mail"]["lag"], groups["mail"]["pending"]) == (3, 0)
    assert (groups["billing"]["lag"], groups["billing"]["dead"]) == (3, 1)
    # Naming queues narrows the output to them, as the table does.
    named = invoke("--namespace", ns, "stats", "--json", "--topics", "work")
    assert json.loads(named.output)["topics"] == []


def test_stats_watch_frames_show_topic_groups_with_lag_rates(busy: Relay) -> None:
    from redrelay.cli.stats import snapshot, watch

    frames = watch(lambda: snapshot(busy), 0.01, as_json=True)
    first = json.loads(next(frames))
    (orders,) = first["topics"]
    assert {g["group"]: g["lag"] for g in orders["groups"]} == {"billing": 3, "mail": 3}
    assert first["topic_rates"] == {}
    busy.topic("orders").publish_many(["f", "g"])
    second = json.loads(next(frames))
    rates = second["topic_rates"]
    assert rates["orders/mail"]["lag"] > 0 and rates["orders/mail"]["acked"] == 0
    text = watch(lambda: snapshot(busy), 0.01, as_json=False)
    assert next(text).startswith("-- ")
    assert _row(next(text), "orders", "mail")[2:5] == ["7", "0", "5"]
    busy.topic("orders").publish("h")
    next(text)  # the blank line closing the first frame
    next(text)  # the second frame's time
    row = _row(next(text), "orders", "mail")
    assert row[4] == "6" and float(row[-2]) > 0  # lag, lag/s
