"""A Cluster primary fails over to its replica while a worker and a producer run.

Redis replicates asynchronously: a primary acknowledges a write before its replica has
it. So when a primary dies, the writes it acknowledged but had not sent yet are lost with
it, and nothing else may be. These tests count every acknowledged put against every
handled message and check exactly that:

- a planned failover (``CLUSTER FAILOVER`` on the replica, which first catches up) loses
  nothing;
- a primary killed while its replica's link is down loses the puts acknowledged in that
  window that no handler had taken yet, and only those; every other acknowledged put is
  handled, the worker carries on with the new primary (and logs the failover), and a
  message is handled twice only if its first run was before the failover (at-least-once);
- with ``min-replicas-to-write 1`` the same window's puts are refused instead, so nothing
  acknowledged is lost (``-m soak``);
- acks lost with the primary mean second runs, never losses (``-m soak``);
- a steady producer thread through one kill (five with ``-m soak``) loses nothing the
  replica was known to have.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

import pytest

from redrelay import BrokerUnavailable, Message, Relay
from redrelay._cluster import LocalCluster
from redrelay._server import AdminClient, RedisServer

from ..processes import wait_for

WAIT = 30.0


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """3 primaries with one replica each; a short node timeout for quick failovers."""
    directory = tmp_path_factory.mktemp("replicated-cluster")
    with LocalCluster(directory, nodes=3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


class Run:
    """A relay with one consumer of ``jobs`` on background threads, and the tally of
    what was put and what was handled."""

    def __init__(self, cluster: LocalCluster, lease: float = 10.0) -> None:
        self.cluster = cluster
        self.relay = Relay(cluster.url, namespace=f"fo{secrets.token_hex(3)}")
        self.queue = self.relay.queue("jobs")
        self.handled: dict[int, list[float]] = defaultdict(list)
        self.acked: list[int] = []
        #: Puts that raised (the primary went away): their outcome is unknown.
        self.unknown: list[int] = []
        #: Cleared: the handler waits, so the worker holds what it fetched.
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

        @self.relay.consumer(
            "jobs", prefetch=5, concurrency=1, backoff=0.01, lease=lease
        )
        def handle(message: Message) -> None:
            self.gate.wait(WAIT)
            with self._lock:
                self.handled[message.body].append(time.monotonic())

    def put(self, numbers: Iterable[int], deadline: float) -> None:
        for n in numbers:
            if time.monotonic() > deadline:
                break
            try:
                self.queue.put(n)
            except BrokerUnavailable:
                self.unknown.append(n)
            else:
                self.acked.append(n)

    def handled_all(self, numbers: Iterable[int]) -> bool:
        with self._lock:
            return all(n in self.handled for n in numbers)

    def idle(self) -> bool:
        stats = self.queue.stats()
        return (stats.ready, stats.in_flight) == (0, 0)


def _probe_key(run: Run) -> str:
    """A key in the queue's slot (so on its primary)."""
    return run.queue.keys.ready.replace(":ready", ":probe")


def _command(server: RedisServer, *args: str | int) -> object:
    with AdminClient(server.url) as client:
        return client.command(*args)


def _replicated(primary: RedisServer, key: str) -> None:
    """Wait until the replica has every write the primary had made so far: a write,
    then ``WAIT`` for one replica's acknowledgement of it (replication is in order)."""
    with AdminClient(primary.url) as client:
        client.command("SET", key, "1")
        assert client.command("WAIT", 1, int(WAIT * 1000)) == 1


def _report(title: str, run: Run, lost: set[int], duplicates: set[int]) -> None:
    print(
        f"\n{title}: {len(run.acked)} puts acknowledged, {len(run.unknown)} unknown "
        f"(raised), {len(run.handled)} handled, {len(lost)} lost, "
        f"{len(duplicates)} handled twice"
    )


def test_a_planned_failover_loses_nothing(replicated: LocalCluster) -> None:
    run = Run(replicated)
    primary = replicated.primary_of(run.queue.keys.ready)
    (replica,) = replicated.replicas_of(primary)
    deadline = time.monotonic() + WAIT
    run.relay.start()
    try:
        run.put(range(200), deadline)
        # The replica takes over (the primary stops writes until it has caught up).
        assert _command(replica, "CLUSTER", "FAILOVER") in (b"OK", "OK")
        run.put(range(200, 400), deadline)
        wait_for(lambda: replicated.primary_of(run.queue.keys.ready) is replica, WAIT)
        run.put(range(400, 500), deadline)
        wait_for(lambda: run.handled_all(run.acked), WAIT, what="every put handled")
        wait_for(run.idle, WAIT, what="the queue empty")
    finally:
        run.relay.stop()
        run.relay.close()
    lost = set(run.acked) - set(run.handled)
    duplicates = {n for n, times in run.handled.items() if len(times) > 1}
    _report("planned failover", run, lost, duplicates)
    assert len(run.acked) + len(run.unknown) == 500
    assert lost == set()
    assert set(run.handled) <= set(run.acked) | set(run.unknown)
    replicated.wait_ok()


def test_a_killed_primary_loses_only_what_it_had_not_replicated(
    replicated: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run(replicated)
    primary = replicated.primary_of(run.queue.keys.ready)
    (replica,) = replicated.replicas_of(primary)
    deadline = time.monotonic() + 2 * WAIT
    run.relay.start()
    try:
        # A: put, handled, acked, and on the replica.
        before = range(200)
        run.put(before, deadline)
        wait_for(lambda: run.handled_all(run.acked), WAIT, what="A handled")
        wait_for(run.idle, WAIT, what="A acked")
        _replicated(primary, _probe_key(run))
        # W: the replica cannot follow (its link is cut and it cannot log in again)
        # while the primary acknowledges 200 puts; the handler holds what it took.
        run.gate.clear()
        _cut_link(primary, replica)
        window = range(200, 400)
        run.put(window, deadline)
        assert b"connected_slaves:0" in _info(primary)  # nothing of W replicated
        primary.kill()
        killed_at = time.monotonic()
        _command(replica, "CONFIG", "SET", "masterauth", "")
        run.gate.set()
        # Z: the producer and the worker carry on with the promoted replica (puts made
        # while the election runs may raise: their outcome is unknown).
        run.put(range(400, 600), deadline)
        wait_for(lambda: replicated.primary_of(run.queue.keys.ready) is replica, WAIT)
        after = range(600, 650)  # once the cluster says so, the producer's puts succeed
        run.put(after, deadline)
        survivors = [n for n in run.acked if n not in window]
        wait_for(lambda: run.handled_all(survivors), WAIT, what="A and Z handled")
        # the worker said so: the dead node's keys are served by its replica now
        runner = run.relay._runner
        assert runner is not None
        wait_for(lambda: runner.epoch.moves >= 1, WAIT, what="the failover reported")
        assert runner.epoch.wipes == 0  # a failover, not a node that came back empty
        dead = f"127.0.0.1:{replicated.port_of(primary)}"
        assert any(
            f"not {dead} (a failover" in r.getMessage() and r.levelname == "WARNING"
            for r in caplog.records
        )
        wait_for(run.idle, WAIT, what="the queue empty on the new primary")
    finally:
        _heal(run, primary, replica)

    acked = set(run.acked)
    lost = acked - set(run.handled)
    duplicates = {n for n, times in run.handled.items() if len(times) > 1}
    _report("killed primary", run, lost, duplicates)
    assert set(before) | set(window) <= acked  # the old primary acknowledged them all
    # only the unreplicated window is lost: all of it but what the worker had taken
    assert lost == {n for n in window if n not in run.handled}
    assert len(lost) >= len(window) // 2  # the worker holds a few (prefetch=5)
    for n in window:  # a lost put was never handled: it did not reach the new primary
        assert len(run.handled.get(n, [])) <= 1
    assert set(after) <= acked  # the producer resumed
    # at-least-once: a second run only for a message whose first run was before the
    # failover (its ack may have died with the primary)
    assert all(run.handled[n][0] < killed_at for n in duplicates)
    assert set(run.handled) <= acked | set(run.unknown)


def _cut_link(primary: RedisServer, replica: RedisServer) -> None:
    """Disconnect the replica, and keep it out: it cannot log in to its primary again."""
    _command(replica, "CONFIG", "SET", "masterauth", "not-the-password")
    _command(primary, "CLIENT", "KILL", "TYPE", "replica")
    wait_for(lambda: b"connected_slaves:0" in _info(primary), WAIT, what="link down")


def _heal(run: Run, primary: RedisServer, replica: RedisServer) -> None:
    """Stop the run; the replica may log in again; the killed primary comes back (it
    rejoins as a replica of the new primary)."""
    run.relay.stop()
    run.relay.close()
    _command(replica, "CONFIG", "SET", "masterauth", "")
    if primary.running():
        _command(primary, "CONFIG", "SET", "min-replicas-to-write", "0")
    else:
        primary.start()
    run.cluster.wait_ok()


def _info(server: RedisServer) -> bytes:
    reply = _command(server, "INFO", "replication")
    assert isinstance(reply, bytes)
    return reply


@pytest.mark.soak  # ~10 s each: out of the 10-minute default suite
def test_min_replicas_to_write_turns_the_loss_into_refused_puts(
    replicated: LocalCluster,
) -> None:
    """The same failover with ``min-replicas-to-write 1`` on the primary: while its
    replica is away it refuses every put (BrokerUnavailable, nothing written), so its
    death loses nothing that was acknowledged."""
    run = Run(replicated)
    primary = replicated.primary_of(run.queue.keys.ready)
    (replica,) = replicated.replicas_of(primary)
    _command(primary, "CONFIG", "SET", "min-replicas-to-write", "1")
    deadline = time.monotonic() + 2 * WAIT
    run.relay.start()
    try:
        run.put(range(100), deadline)
        wait_for(lambda: run.handled_all(run.acked), WAIT, what="A handled")
        wait_for(run.idle, WAIT, what="A acked")
        _cut_link(primary, replica)
        with pytest.raises(
            BrokerUnavailable, match="min-replicas-to-write.*Nothing was"
        ):
            run.queue.put(-1)
        window = range(100, 150)
        run.put(window, deadline)
        primary.kill()
        killed_at = time.monotonic()
        _command(replica, "CONFIG", "SET", "masterauth", "")
        after = range(150, 250)
        run.put(after, deadline)
        wait_for(lambda: replicated.primary_of(run.queue.keys.ready) is replica, WAIT)
        wait_for(lambda: run.handled_all(run.acked), WAIT, what="every put handled")
        wait_for(run.idle, WAIT, what="the queue empty on the new primary")
    finally:
        _heal(run, primary, replica)
    acked = set(run.acked)
    lost = acked - set(run.handled)
    duplicates = {n for n, times in run.handled.items() if len(times) > 1}
    _report("killed primary, min-replicas-to-write 1", run, lost, duplicates)
    assert set(window) <= set(run.unknown)  # every put of the window was refused ...
    assert not set(window) & set(run.handled)  # ... and not written
    assert lost == set()
    assert {n for n in after if n in acked}
    assert all(run.handled[n][0] < killed_at for n in duplicates)


@pytest.mark.soak  # ~10 s each: out of the 10-minute default suite
def test_an_ack_lost_with_the_primary_means_a_second_run_not_a_loss(
    replicated: LocalCluster,
) -> None:
    """Messages fetched before the replica's link went down, then handled and acked on
    the old primary: the new primary still has them, in that worker's in-flight set (the
    fetch was replicated) or ready (it was not). They run again: at once if ready, and
    when the worker stops and gives back its deliveries if in flight."""
    # A long lease: the deliveries held stay held, however slow the failover is here.
    run = Run(replicated, lease=120.0)
    primary = replicated.primary_of(run.queue.keys.ready)
    (replica,) = replicated.replicas_of(primary)
    deadline = time.monotonic() + 2 * WAIT
    run.relay.start()
    try:
        run.gate.clear()
        batch = range(20)
        run.put(batch, deadline)
        wait_for(lambda: run.queue.stats().in_flight > 0, WAIT, what="a fetch")
        _replicated(primary, _probe_key(run))  # the replica has that fetch
        _cut_link(primary, replica)
        run.gate.set()
        wait_for(lambda: run.handled_all(batch), WAIT, what="the batch handled")
        wait_for(run.idle, WAIT, what="the batch acked on the old primary")
        primary.kill()
        killed_at = time.monotonic()
        _command(replica, "CONFIG", "SET", "masterauth", "")
        wait_for(lambda: replicated.primary_of(run.queue.keys.ready) is replica, WAIT)
        # Still in flight on the new primary: the deliveries whose fetch it has, held
        # by a worker that lives on (and heartbeats), their acks lost with the primary.
        wait_for(lambda: run.queue.stats().ready == 0, WAIT, what="ready ones rerun")
        held = run.queue.stats().in_flight
        run.relay.stop()  # gives them back to ready
        run.relay.start()
        wait_for(lambda: run.handled_all(batch), WAIT)
        wait_for(run.idle, WAIT, what="every second run acked")
    finally:
        _heal(run, primary, replica)
    lost = set(run.acked) - set(run.handled)
    duplicates = {n for n, times in run.handled.items() if len(times) > 1}
    _report(f"lost acks ({held} held after the failover)", run, lost, duplicates)
    assert set(run.acked) == set(batch) and lost == set()
    assert held >= 1  # the worker had fetched before the cut
    assert duplicates == set(batch)  # every lost ack meant a second run ...
    assert all(run.handled[n][0] < killed_at for n in duplicates)  # ... of earlier ones
    assert all(len(times) <= 2 for times in run.handled.values())


@pytest.mark.parametrize(
    "rounds", [1, pytest.param(5, marks=[pytest.mark.soak, pytest.mark.timeout(600)])]
)
def test_primaries_killed_under_a_steady_producer(
    replicated: LocalCluster, rounds: int
) -> None:
    """A producer thread and a worker run throughout; the queue's primary is SIGKILLed
    ``rounds`` times (it comes back as a replica each time). Before each kill the
    replica is known to have every put acknowledged up to some point; only puts
    acknowledged after that point and before the kill may be lost."""
    run = Run(replicated)
    stop = threading.Event()
    windows: list[set[int]] = []
    kills: list[float] = []

    def produce() -> None:
        n = 0
        end = time.monotonic() + rounds * 4 * WAIT
        while not stop.is_set() and time.monotonic() < end:
            run.put([n], end)
            n += 1
            time.sleep(0.002)  # a steady rate, not a flood

    producer = threading.Thread(target=produce)
    run.relay.start()
    producer.start()
    try:
        for _ in range(rounds):
            primary = replicated.primary_of(run.queue.keys.ready)
            count = len(run.acked)
            wait_for(lambda c=count: len(run.acked) >= c + 100, WAIT, what="puts")
            safe = len(run.acked)
            _replicated(primary, _probe_key(run))  # every put up to `safe` is there
            wait_for(lambda s=safe: len(run.acked) >= s + 50, WAIT, what="more puts")
            primary.kill()
            kills.append(time.monotonic())
            wait_for(
                lambda p=primary: replicated.primary_of(run.queue.keys.ready) is not p,
                WAIT,
                what="a new primary",
            )
            # Read once the new primary serves, so that an ack the old primary sent
            # as it died is counted in (a superset: it has the first puts of the new).
            windows.append(set(run.acked[safe:]))
            primary.start()
            replicated.wait_ok()
        count = len(run.acked)
        wait_for(lambda: len(run.acked) >= count + 100, WAIT, what="puts after")
        stop.set()
        producer.join(WAIT)
        wait_for(lambda: run.handled_all(set(run.acked) - set().union(*windows)), WAIT)
        # A delivery whose ack died with a primary is still held by this live worker
        # (test_an_ack_lost_...): stopping gives it back, and it runs again.
        wait_for(lambda: run.queue.stats().ready == 0, WAIT, what="ready drained")
        run.relay.stop()
        run.relay.start()
        wait_for(run.idle, WAIT, what="the queue empty")
    finally:
        stop.set()
        producer.join(WAIT)
        run.relay.stop()
        run.relay.close()
    lost = set(run.acked) - set(run.handled)
    duplicates = {n for n, times in run.handled.items() if len(times) > 1}
    _report(f"{rounds} kill(s) under a steady producer", run, lost, duplicates)
    assert lost <= set().union(*windows)
    assert all(run.handled[n][0] < kills[-1] for n in duplicates)
    assert set(run.handled) <= set(run.acked) | set(run.unknown)
