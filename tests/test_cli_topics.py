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
    relay.drain(timeout=10)
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
    busy.drain(timeout=10)  # fails again: dead again
    purged = invoke("--namespace", ns, "dead", "purge", "orders/billing", "--all", "-y")
    assert purged.exit_code == 0, purged.output
    assert "purged 1 dead letters" in purged.output
