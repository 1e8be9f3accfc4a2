"""``/metrics``: parsed with prometheus_client's own parser and compared with ``stats``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from redrelay import Message, Relay, metrics, monitor
from redrelay.cli import cli
from redrelay.listener import GapReport
from redrelay.testing import ChannelRecorder

from .worker.helpers import ROOT, wait_for


def samples(relay: Relay) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition(relay)
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_match_stats(
    make_relay: Callable[..., Relay], redrelay_url: str
) -> None:
    relay = make_relay(retries=1, backoff=0.0)

    @relay.consumer("work")
    def handle(message: Message) -> None:
        if message.body == "bad":
            raise RuntimeError("bad body")

    relay.queue("work").put_many(["a", "b", "bad"])
    relay.drain(timeout=10, raise_on_failure=False)
    relay.queue("work").put_many(["c", "d"])
    relay.queue("work").put("later", delay=60)
    relay.queue("other").put({"n": 1})

    got = samples(relay)
    out = CliRunner().invoke(
        cli, ["--url", redrelay_url, "--namespace", relay.namespace, "stats", "--json"]
    )
    assert out.exit_code == 0, out.output
    stats = {q["name"]: q for q in json.loads(out.output)}
    assert set(stats) == {"work", "other"}
    for name, q in stats.items():
        for state in metrics.QUEUE_STATES:
            key = ("redrelay_queue_messages", (("queue", name), ("state", state)))
            assert got[key] == q[state], (name, state)
        for outcome in metrics.OUTCOMES:
            key = ("redrelay_messages_total", (("outcome", outcome), ("queue", name)))
            assert got[key] == q["counters"].get(outcome, 0), (name, outcome)
        assert got[("redrelay_queue_consumers", (("queue", name),))] == q["consumers"]
        age = got[("redrelay_queue_oldest_age_seconds", (("queue", name),))]
        assert age > 0 and abs(age - q["oldest_age"]) < 5
    # what the handlers did, independently of stats: 2 acked, 1 retried then dead
    assert (
        got[("redrelay_messages_total", (("outcome", "acked"), ("queue", "work")))] == 2
    )
    assert (
        got[("redrelay_messages_total", (("outcome", "retried"), ("queue", "work")))]
        == 1
    )
    assert (
        got[("redrelay_messages_total", (("outcome", "dead"), ("queue", "work")))] == 1
    )
    assert (
        got[("redrelay_queue_messages", (("queue", "work"), ("state", "ready")))] == 2
    )
    assert (
        got[("redrelay_queue_messages", (("queue", "work"), ("state", "delayed")))] == 1
    )
    assert got[("redrelay_workers", ())] == 0
    # never a message id as a label
    for _, labels in got:
        assert {k for k, _ in labels} <= {
            "queue",
            "state",
            "outcome",
            "topic",
            "group",
            "channel",
            "le",
        }


def test_history_counts_per_minute(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(retries=0)

    @relay.consumer("work")
    def handle(message: Message) -> None:
        if message.body % 3 == 0:
            raise RuntimeError("third")

    relay.queue("work").put_many(list(range(1, 13)))
    relay.drain(timeout=10, raise_on_failure=False)
    acked = monitor.queue_history(relay, "work", "acked", points=60)
    dead = monitor.queue_history(relay, "work", "dead", points=60)
    hourly = monitor.queue_history(relay, "work", "acked", points=24, unit="hour")
    assert len(acked) == 60 and sum(acked) == 8 and sum(dead) == 4
    # a drain takes well under a minute: the counts sit in the last one or two slots
    assert sum(acked[-2:]) == 8
    assert sum(hourly[-2:]) == 8


def test_history_ring_is_bounded(make_relay: Callable[..., Relay]) -> None:
    """A slot written in an older round reads as 0 and is overwritten, never summed."""
    relay = make_relay()
    q = relay.queue("work")
    k = q.shard_keys(register=True)[0]
    now_ms = relay.connection.time_ms(k.history)
    minute = now_ms // 60_000
    stale = f"{minute - 2880}:99"  # the same slot, two days ago
    relay.connection.call("HSET", k.history, f"m{minute % 2880}:acked", stale)

    @relay.consumer("work")
    def handle(message: Message) -> None:
        pass

    q.put("x")
    relay.drain(timeout=10)
    counts = monitor.queue_history(relay, "work", "acked", points=2)
    assert sum(counts) == 1
    assert relay.connection.call("HLEN", k.history) <= 4  # 2 rings x acked only


def test_gap_counters_and_histograms(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    metrics.instrument(relay)

    @relay.consumer("work")
    def handle(message: Message) -> None:
        pass

    relay.queue("work").put_many([1, 2, 3])
    relay.drain(timeout=10)
    assert relay.on_gap is not None
    relay.on_gap(GapReport(channel="news", reason="sequence gap", missed=4))
    relay.on_gap(GapReport(channel="news", reason="reconnected after 1 s"))
    got = samples(relay)
    assert got[("redrelay_channel_gaps_total", (("channel", "news"),))] == 2
    assert got[("redrelay_channel_lost_messages_total", (("channel", "news"),))] == 4
    count = got[("redrelay_handler_duration_seconds_count", (("queue", "work"),))]
    assert count >= 3
    assert got[("redrelay_queue_wait_seconds_count", (("queue", "work"),))] == count


def test_topic_metrics_match_topic_stats(relay: Relay) -> None:
    @relay.subscriber("orders", group="billing", start="beginning")
    def bill(message: Message) -> None:
        pass

    relay.topic("orders").publish_many([{"n": i} for i in range(5)])
    relay.drain(timeout=10)
    relay.topic("orders").publish_many([{"n": i} for i in range(3)])  # unread: lag 3
    got = samples(relay)
    stats = relay.topic("orders").stats()
    (group,) = stats.groups
    labels = (("group", "billing"), ("topic", "orders"))
    assert group.lag == 3
    assert got[("redrelay_topic_lag", labels)] == group.lag
    assert got[("redrelay_topic_pending", labels)] == group.pending
    assert got[("redrelay_topic_dead", labels)] == group.dead
    assert got[("redrelay_topic_length", (("topic", "orders"),))] == stats.length == 8
    acked = got[
        (
            "redrelay_topic_messages_total",
            (("group", "billing"), ("outcome", "acked"), ("topic", "orders")),
        )
    ]
    assert acked == group.counters["acked"] == 5
    history = monitor.group_history(relay, "orders", "billing", "acked", points=60)
    assert len(history) == 60 and sum(history) == 5


def test_histograms_of_several_worker_processes_add_up(
    make_relay: Callable[..., Relay], redrelay_url: str, tmp_path: Path
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, what two worker processes observed is served by a
    third process (prometheus_client's multi-process files)."""
    relay = make_relay()
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = dict(
        os.environ,
        REDRELAY_URL=redrelay_url,
        TEST_NAMESPACE=relay.namespace,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )
    workers = []
    for n in (1, 2):  # one after the other, so that each surely handles some
        relay.queue("traced").put_many(list(range(15)))
        worker = subprocess.Popen(
            [sys.executable, "-m", "redrelay", "worker", "tests.apps.traced_app:relay"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers.append(worker)
        try:
            wait_for(
                lambda n=n: (
                    relay.queue("traced").stats().counters.get("acked") == 15 * n
                ),
                timeout=30,
                what=f"worker {n} acked its 15 messages",
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
    scrape = subprocess.run(
        [
            sys.executable,
            "-c",
            "from redrelay import Relay, metrics; import sys, os;"
            "r = Relay(os.environ['REDRELAY_URL'], namespace=os.environ['TEST_NAMESPACE']);"
            "sys.stdout.write(metrics.exposition(r)[0].decode())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = {}
    for family in text_string_to_metric_families(scrape.stdout):
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    key = ("redrelay_handler_duration_seconds_count", (("queue", "traced"),))
    assert got[key] == 30
    pids = {
        p.name.split("_")[-1].split(".")[0] for p in multiproc.glob("histogram_*.db")
    }
    assert {str(w.pid) for w in workers} <= pids  # both processes observed some
    assert (
        got[("redrelay_messages_total", (("outcome", "acked"), ("queue", "traced")))]
        == 30
    )


def test_channel_subscribers(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    seen: list[Message] = []

    @relay.subscriber("news")
    def news(message: Message) -> None:
        seen.append(message)

    relay.start()
    try:
        wait_for(
            lambda: relay.publish("news", "hi") and seen, what="a subscribed listener"
        )
        got = samples(relay)
        assert got[("redrelay_channel_subscribers", (("channel", "news"),))] == 1
        subscribers, _ = monitor.channel_subscribers(relay)
        assert subscribers == {"news": 1}
    finally:
        relay.stop()
    wait_for(lambda: monitor.channel_subscribers(relay)[0] == {}, what="unsubscribed")


def test_a_queues_own_channel_is_not_a_channel(
    make_relay: Callable[..., Relay],
) -> None:
    """The results' waiter listens on ``<ns>:{<queue>}:done``: /metrics, the dashboard,
    a ChannelRecorder and a pattern subscriber must not take it for an app's channel
    (a new user saw ``redrelay_channel_subscribers{channel="{reports}:done"}``)."""
    relay = make_relay()
    heard: list[str] = []

    @relay.subscriber("*", pattern=True)
    def anything(message: Message) -> None:
        heard.append(message.channel or "")

    @relay.consumer("reports", result_ttl=60)
    def render(message: Message) -> int:
        return 1

    relay.start()
    try:
        relay.wait_ready()
        with ChannelRecorder(relay) as recorded:
            msg_id = relay.queue("reports").put({})
            assert relay.queue("reports").result(msg_id, timeout=30) == 1
            relay.publish("news", "after the result")
        # The waiter's subscription is there (so this test can fail)...
        active = relay.connection.call("PUBSUB", "CHANNELS", f"{relay.namespace}:*")
        assert f"{relay.namespace}:{{reports}}:done".encode() in active
        # ...and announcements on it were published (before "news", so they would
        # have reached the pattern subscriber and the recorder before it).
        wait_for(lambda: "news" in heard, what="the pattern subscriber")
        assert [c for c in heard if c != "redrelay-drain-sync"] == ["news"]  # + marker
        assert [m.channel for m in recorded.messages()] == ["news"]
        subscribers, _ = monitor.channel_subscribers(relay)
        assert "{reports}:done" not in subscribers
        assert not [
            labels
            for (name, labels) in samples(relay)
            if name.startswith("redrelay_channel") and "{" in str(labels)
        ]
    finally:
        relay.stop()
