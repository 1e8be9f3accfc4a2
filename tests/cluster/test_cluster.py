"""Queues, channels, retries, dead letters and sharded queues on a real 3-node Redis Cluster."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from redrelay import ConfigurationError, JobFailed, Message, Reject, Relay
from redrelay._cluster import LocalCluster
from redrelay._server import AdminClient, RedisServer
from redrelay.cli import cli
from redrelay.listener import Listener
from redrelay.worker.epoch import EpochWatch

from ..processes import Worker, wait_for

ROOT = Path(__file__).resolve().parents[2]
MakeRelay = Callable[..., Relay]


def node_of(relay: Relay, key: str) -> str:
    """The name (host:port) of the cluster node that holds ``key``."""
    return str(relay.connection.client.get_node_from_key(key).name)  # type: ignore[attr-defined]


def test_queue_retries_dead_letters_and_delays(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay(retries=1)
    seen: Counter[str] = Counter()

    @relay.consumer("jobs")
    def handle(message: Message) -> None:
        seen[message.body["op"]] += 1
        if message.body["op"] == "flaky" and message.attempt == 1:
            raise RuntimeError("first time fails")
        if message.body["op"] == "poison":
            raise Reject("bad")

    jobs = relay.queue("jobs")
    jobs.put({"op": "ok"})
    jobs.put({"op": "flaky"})
    jobs.put({"op": "poison"})
    jobs.put({"op": "later"}, delay=0.3)
    jobs.put_many([{"op": "ok"}] * 5)
    assert jobs.put({"op": "once"}, dedup_key="k") == jobs.put(
        {"op": "x"}, dedup_key="k"
    )
    relay.drain(timeout=20, raise_on_failure=False)
    assert seen == {"ok": 6, "flaky": 2, "poison": 1, "later": 1, "once": 1}
    stats = jobs.stats()
    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == (0, 0, 0, 1)
    assert stats.counters["acked"] == 9 and stats.counters["retried"] == 1
    (letter,) = jobs.dead_letters()
    assert letter.body == {"op": "poison"} and "bad" in letter.reason
    assert jobs.requeue_dead() == 1 and jobs.stats().ready == 1
    assert jobs.purge_dead() == 0
    assert [s.name for s in relay.stats()] == ["jobs"]


def test_a_plain_url_to_a_cluster_node_says_to_use_a_cluster_url(
    cluster: LocalCluster, make_cluster_relay: MakeRelay
) -> None:
    on_cluster = make_cluster_relay()
    names = [f"q{i}" for i in range(20)]
    plain = make_cluster_relay(url=cluster.node_urls()[0])
    first = f"127.0.0.1:{cluster.servers[0].port}"
    # a queue whose slot another node holds: the MOVED reply becomes a hint
    name = next(
        n for n in names if node_of(on_cluster, on_cluster.queue(n).keys.ready) != first
    )
    with pytest.raises(ConfigurationError, match=r"MOVED.*use a redis\+cluster:// URL"):
        plain.queue(name).stats()


def test_a_cluster_url_to_a_plain_server_says_to_use_redis(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(unix_socket=False, appendonly=False)
    url = server.url.replace("redis://", "redis+cluster://")
    with (
        Relay(url) as relay,
        pytest.raises(ConfigurationError, match="not a Redis Cluster"),
    ):
        relay.queue("x").stats()


def test_a_subscriber_receives_a_publish_sent_through_another_node(
    make_cluster_relay: MakeRelay,
) -> None:
    got: list[object] = []
    listening = make_cluster_relay()
    listening.subscriber("news")(lambda m: got.append(m.body))
    publisher = make_cluster_relay()
    client = publisher.connection.client
    with Listener(listening, listening.subscribers) as listener:
        assert listener.connected.wait(10)
        for node in client.get_primaries():  # type: ignore[attr-defined]
            client.set_default_node(node)  # type: ignore[attr-defined]
            publisher.publish("news", {"via": node.name})
        wait_for(lambda: len(got) == 3, timeout=10, what="three messages")
    nodes = {n.name for n in client.get_primaries()}  # type: ignore[attr-defined]
    assert {b["via"] for b in got} == nodes  # type: ignore[index]


def test_sharded_queue_spreads_over_nodes_and_drains_exactly_once(
    make_cluster_relay: MakeRelay,
) -> None:
    relay = make_cluster_relay(concurrency=4, prefetch=20)
    done: Counter[int] = Counter()
    lock = threading.Lock()

    @relay.consumer("hot", shards=8)
    def handle(message: Message) -> None:
        with lock:
            done[message.body] += 1

    hot = relay.queue("hot")
    keys = hot.shard_keys(register=True)
    assert [k.ready for k in keys][:2] == [
        f"{relay.namespace}:{{hot#0}}:ready",
        f"{relay.namespace}:{{hot#1}}:ready",
    ]
    assert len({node_of(relay, k.ready) for k in keys}) >= 2
    for i in range(500):
        hot.put(i)
    hot.put_many(range(500, 2000))
    per_shard = [relay.connection.call("LLEN", k.ready) for k in keys]
    assert all(n == 250 for n in per_shard), per_shard
    assert hot.stats().ready == 2000
    relay.drain(timeout=60)
    assert len(done) == 2000 and set(done.values()) == {1}
    stats = hot.stats()
    assert (stats.ready, stats.in_flight, stats.counters["acked"]) == (0, 0, 2000)


def test_sharded_dead_letters_dedup_and_stats_aggregate(
    make_cluster_relay: MakeRelay,
) -> None:
    relay = make_cluster_relay(retries=0)

    @relay.consumer("mail", shards=4)
    def handle(message: Message) -> None:
        raise Reject(f"no {message.body}")

    mail = relay.queue("mail")
    mail.put_many(range(8))
    first = mail.put("d", dedup_key="same")
    assert mail.put("d2", dedup_key="same") == first
    mail.put("late", delay=60)
    stats = mail.stats()
    assert (stats.ready, stats.delayed) == (9, 1)
    assert [s.ready for s in relay.stats(["mail"])] == [9]
    mail.purge_dead()
    relay.queue("mail")  # same object, same shards
    mail_keys = mail.shard_keys()
    relay.connection.call("DEL", *[mail_keys[0].delayed])  # not needed by drain below
    for k in mail_keys:
        relay.connection.call("DEL", k.delayed, k.delayed_data)
    relay.drain(timeout=20, raise_on_failure=False)
    letters = mail.dead_letters(limit=100)
    assert sorted(str(d.body) for d in letters) == sorted([*map(str, range(8)), "d"])
    assert [d.dead_at for d in letters] == sorted(
        (d.dead_at for d in letters), reverse=True
    )
    assert len(mail.dead_letters(limit=3, offset=2)) == 3
    assert mail.stats().dead == 9
    assert sum(len(ids) for ids in mail.iter_dead_ids(batch=2)) == 9
    assert mail.requeue_dead([letters[0].id, "nope"]) == 1
    assert mail.stats().ready == 1
    assert mail.purge_dead() == 8 and mail.stats().dead == 0


def test_producers_and_workers_must_agree_on_shards(
    make_cluster_relay: MakeRelay,
) -> None:
    a = make_cluster_relay()
    a.queue("orders", shards=8).put(1)
    b = make_cluster_relay()
    with pytest.raises(ConfigurationError, match=r"has 8 shard\(s\).*shards=4"):
        b.queue("orders", shards=4).put(1)
    c = make_cluster_relay()
    assert (
        len(c.queue("orders").shard_keys()) == 8
    )  # undeclared: adopts the stored count
    c.queue("orders").put(2)
    assert c.queue("orders").stats().ready == 2
    with pytest.raises(ConfigurationError, match="shards="):
        c.queue("orders", shards=0)
    with pytest.raises(ConfigurationError, match="already has shards=8"):
        c.queue("orders", shards=2)


def test_epoch_is_watched_on_every_node(make_cluster_relay: MakeRelay) -> None:
    relay = make_cluster_relay()
    watch = EpochWatch(relay.connection, relay.namespace)
    keys = watch.keys()
    assert len({node_of(relay, k) for k in keys[1:]}) == 3
    assert watch.check() and watch.check()
    relay.connection.call("DEL", keys[2])  # as if that node lost its data
    assert not watch.check() and watch.wipes == 1


def test_cli_stats_and_doctor_on_a_cluster(
    cluster: LocalCluster, make_cluster_relay: MakeRelay
) -> None:
    relay = make_cluster_relay()
    relay.queue("cli", shards=3).put_many(range(6))
    runner = CliRunner()
    out = runner.invoke(
        cli, ["--url", cluster.url, "--namespace", relay.namespace, "stats"]
    )
    assert out.exit_code == 0, out.output
    assert "cli" in out.output and "6" in out.output
    out = runner.invoke(
        cli, ["--url", cluster.url, "--namespace", relay.namespace, "doctor"]
    )
    assert out.exit_code == 0, out.output
    assert "cluster: 3 primaries, cluster_state ok" in out.output
    odd = cluster.servers[1]
    with AdminClient(odd.url) as client:
        client.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    try:
        out = runner.invoke(cli, ["--url", cluster.url, "doctor"])
    finally:
        with AdminClient(odd.url) as client:
            client.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    # every primary is checked, and the warning names the one that differs
    assert f"127.0.0.1:{odd.port}=allkeys-lru" in out.output
    plain = runner.invoke(cli, ["--url", cluster.node_urls()[0], "doctor"])
    assert plain.exit_code == 0, plain.output
    assert "cluster (but the URL is not redis+cluster://)" in plain.output
    assert "use redis+cluster://host:port" in plain.output  # the warning


def test_a_sigkilled_worker_on_the_cluster_loses_nothing(
    cluster: LocalCluster, make_cluster_relay: MakeRelay, redrelay_url: str
) -> None:
    relay = make_cluster_relay()
    hot = relay.queue("hot", shards=8)
    ids = set(hot.put_many(range(2000)))
    env = {"TEST_NAMESPACE": relay.namespace, "TEST_RECORD_URL": redrelay_url}
    record = redis.Redis.from_url(redrelay_url)
    done_key = f"{relay.namespace}:test:done"

    def start() -> Worker:
        return Worker("tests.apps.cluster_app:relay", cluster.url, env=env)

    first = start()
    try:
        wait_for(lambda: record.llen(done_key) >= 300, timeout=30, what="300 done")
        first.kill()
        assert hot.stats().in_flight > 0  # the dead worker held deliveries
        second = start()
        try:
            wait_for(
                lambda: hot.stats().ready + hot.stats().in_flight == 0,
                timeout=60,
                what="drained by the second worker",
            )
        finally:
            second.stop(20)
    finally:
        first.kill()
    runs = [str(r, "ascii").split()[0] for r in record.lrange(done_key, 0, -1)]  # type: ignore[arg-type]
    record.delete(done_key)
    record.close()
    assert set(runs) == ids  # lost = 0
    duplicates = len(runs) - len(set(runs))
    assert (
        duplicates <= 8 * 4 * 20
    )  # at most what the killed worker held (shards x threads x prefetch)
    assert hot.stats().counters["recovered"] >= 1


def test_cluster_urls_name_one_or_more_nodes() -> None:
    from redrelay.io.cluster import split_cluster_url as _split_cluster_url
    from redrelay.io.sync import redact

    assert _split_cluster_url(
        "rediss+cluster://u:p@h1:1,h2:2/0?ssl_cert_reqs=none"
    ) == ("rediss://u:p@", "/0?ssl_cert_reqs=none", [("h1", 1), ("h2", 2)])
    assert _split_cluster_url("redis+cluster://h:7000") == (
        "redis://",
        "",
        [("h", 7000)],
    )
    assert (
        redact("redis+cluster://u:secret@h1:1,h2:2")
        == "redis+cluster://u:***@h1:1,h2:2"
    )
    with pytest.raises(ConfigurationError, match="host:port"):
        _split_cluster_url("redis+cluster://h1:1,h2")
    with pytest.raises(ConfigurationError, match="redis\\+cluster://"):
        Relay("cluster://h:1")


def test_the_plugin_fixture_gives_a_cluster_url(
    make_relay: MakeRelay, redrelay_cluster_url: str
) -> None:
    relay = make_relay(url=redrelay_cluster_url)
    assert relay.connection.is_cluster
    relay.queue("emails", shards=4).put({"to": "ada@example.com"})
    assert relay.queue("emails").stats().ready == 1


def test_cli_dead_letters_of_a_sharded_queue(
    cluster: LocalCluster, make_cluster_relay: MakeRelay
) -> None:
    relay = make_cluster_relay(retries=0)

    @relay.consumer("bad", shards=4)
    def handle(message: Message) -> None:
        raise Reject("nope")

    relay.queue("bad").put_many(range(6))
    relay.drain(timeout=20, raise_on_failure=False)
    base = ["--url", cluster.url, "--namespace", relay.namespace]
    runner = CliRunner()
    listed = runner.invoke(cli, [*base, "dead", "list", "bad", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(d["body"] for d in orjson.loads(listed.output)) == list(range(6))
    moved = runner.invoke(cli, [*base, "dead", "requeue", "bad", "--all"])
    assert moved.exit_code == 0, moved.output
    stats = relay.queue("bad").stats()
    assert (stats.ready, stats.dead) == (6, 0)
    # each went back to its own shard
    assert all(
        relay.connection.call("LLEN", k.ready) > 0
        for k in relay.queue("bad").shard_keys()
    )


def test_results_wait_status_and_cancel_through_the_sync_api(
    make_cluster_relay: MakeRelay,
) -> None:
    """The sync twin of test_aio_cluster's results test: a tracked put (its record and
    its LPUSH in one transaction on the queue's node), status, cancel, result, and a
    failure stored as one, on every redis-py the range allows (the lowest run too)."""
    relay = make_cluster_relay()

    @relay.consumer("reports", result_ttl=60, retries=0)
    def render(message: Message) -> dict[str, int]:
        if message.body < 0:
            raise ValueError("negative")
        return {"double": message.body * 2}

    reports = relay.queue("reports")
    first, second, bad = reports.put(21), reports.put(1), reports.put(-1)
    assert reports.status(first) == "queued"
    assert reports.cancel(second) is True
    relay.drain(timeout=20, raise_on_failure=False)
    assert reports.result(first, timeout=20) == {"double": 42}
    with pytest.raises(JobFailed) as failed:
        reports.result(bad, timeout=20)
    assert "ValueError" in str(failed.value)
    states = (reports.status(first), reports.status(second), reports.status(bad))
    assert states == ("succeeded", "cancelled", "failed")
    # More than one chunk of put_many: its LPUSHes in one MULTI on the queue's node.
    bulk = relay.queue("bulk")
    assert len(bulk.put_many(list(range(2500)))) == 2500
    assert bulk.stats().ready == 2500
