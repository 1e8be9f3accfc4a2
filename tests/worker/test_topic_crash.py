"""Topic subscribers in real worker processes, SIGKILLed mid-run: no group loses anything."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import pytest
import redis

from redrelay import Relay

from .helpers import ROOT, wait_for


class TopicWorker:
    """``python -m redrelay worker tests.apps.topic_app:relay`` as a real subprocess."""

    def __init__(self, url: str, namespace: str, lease: float) -> None:
        env = dict(os.environ)
        env.update(
            {
                "REDRELAY_URL": url,
                "TEST_NAMESPACE": namespace,
                "TEST_LEASE": str(lease),
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            }
        )
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "redrelay", "worker", "tests.apps.topic_app:relay"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_topic_worker(
    redrelay_url: str, relay: Relay
) -> Iterator[Callable[[], TopicWorker]]:
    started: list[TopicWorker] = []

    def start() -> TopicWorker:
        worker = TopicWorker(redrelay_url, relay.namespace, lease=2.0)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def _done(url: str, ns: str, group: str) -> list[int]:
    with redis.Redis.from_url(url) as client:
        return [int(x) for x in client.lrange(f"{ns}:test:topic:{group}", 0, -1)]


def test_sigkilled_topic_workers_lose_nothing_per_group(
    relay: Relay, redrelay_url: str, start_topic_worker: Callable[[], TopicWorker]
) -> None:
    total = 3000
    relay.topic("events").publish_many([{"n": n} for n in range(total)])
    ns, rng = relay.namespace, random.Random(5)
    workers = [start_topic_worker(), start_topic_worker()]
    kills = 0
    for round_ in range(4):
        # let the workers get going, then kill one mid-run and start a replacement
        target = len(_done(redrelay_url, ns, "billing")) + 150

        def progressed(target: int = target) -> bool:
            return len(_done(redrelay_url, ns, "billing")) >= target

        wait_for(progressed, timeout=60, what=f"progress in round {round_}")
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        kills += 1
        workers.append(start_topic_worker())
    for group in ("billing", "mail"):

        def all_done(group: str = group) -> bool:
            return set(_done(redrelay_url, ns, group)) == set(range(total))

        wait_for(all_done, timeout=120, interval=0.2, what=f"all done in {group}")
    stats = {g.group: g for g in relay.topic("events").stats().groups}
    assert kills == 4
    # the killed workers held entries that went back to their group
    assert sum(g.counters.get("recovered", 0) for g in stats.values()) > 0
    for worker in workers:
        assert worker.close() == 0
    for group in ("billing", "mail"):
        done = _done(redrelay_url, ns, group)
        assert set(done) == set(range(total))  # none lost
        assert len(done) - total <= 4 * 2 * 2 * 10  # duplicates: at most what was held
        stats = {g.group: g for g in relay.topic("events").stats().groups}
        assert stats[group].pending == 0 and stats[group].dead == 0
