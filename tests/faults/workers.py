"""Worker subprocesses for the fault tests, a pool that kills them, and waiting helpers."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from redrelay.protocol.keys import QueueKeys

from ..processes import ROOT as ROOT
from ..processes import SRC as SRC
from ..processes import Worker
from ..processes import wait_for as _wait_for
from .history import audit


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    """:func:`tests.processes.wait_for` with the fault tests' longer default."""
    return _wait_for(predicate, timeout, interval, what)


class FaultWorker(Worker):
    """``python -m redrelay worker tests.faults.app:relay`` on ``broker_url``.

    ``env`` adds ``FAULTS_*`` settings (see ``app.py``); the log is a file (kept when
    the test fails, see :mod:`tests.processes`).
    """

    def __init__(
        self,
        broker_url: str,
        history_url: str,
        namespace: str,
        *args: str,
        **env: str,
    ) -> None:
        super().__init__(
            "tests.faults.app:relay",
            broker_url,
            *args,
            env={
                "FAULTS_HISTORY_URL": history_url,
                "FAULTS_NAMESPACE": namespace,
                **env,
            },
            name="fault-worker",
        )


def consumers_of(client: redis.Redis, keys: QueueKeys, pid: int) -> list[str]:
    """The consumer ids registered by process ``pid`` (from the consumers hash)."""
    out = []
    for cid, info in client.hgetall(keys.consumers).items():
        if orjson.loads(info).get("pid") == pid:
            out.append(cid.decode())
    return out


def held_by_pid(client: redis.Redis, keys: QueueKeys, pid: int) -> set[str]:
    """Ids in flight with the consumers of process ``pid``."""
    return audit(client, keys).held_by(consumers_of(client, keys, pid))


@dataclass(slots=True)
class Kill:
    """One SIGKILL: when, whom, and what the victim held at that moment."""

    t: float
    pid: int
    held: set[str]
    #: Seconds until the first of ``held`` started again in another process (None: held
    #: nothing, or not measured yet).
    takeover: float | None = None


@dataclass
class WorkerPool:
    """``size`` workers kept running: a killed one is replaced at once, as a supervisor does."""

    start: Callable[[], FaultWorker]
    size: int
    client: redis.Redis
    keys: QueueKeys
    workers: list[FaultWorker] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    retired: list[FaultWorker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workers = [self.start() for _ in range(self.size)]

    def kill_random(self, rng: random.Random) -> Kill:
        """SIGKILL one worker and start its replacement.

        First every worker of the pool must have joined (registered its consumers): the
        victim always leaves a live worker behind, so a takeover measures the lease rule,
        not how long a replacement process takes to start on a busy machine (a kill that
        caught the survivor of the previous one while its replacement was still
        importing once took 5.9 s under load).
        """
        wait_for(
            lambda: all(
                consumers_of(self.client, self.keys, w.pid) for w in self.workers
            ),
            timeout=60,
            what="every worker of the pool to join",
        )
        victim = rng.choice(self.workers)
        t = time.time()
        victim.kill()
        kill = Kill(t, victim.pid, held_by_pid(self.client, self.keys, victim.pid))
        self.kills.append(kill)
        self.workers[self.workers.index(victim)] = self.start()
        self.retired.append(victim)
        return kill

    def close(self) -> None:
        for worker in self.workers + self.retired:
            worker.close()


def measure_takeovers(kills: list[Kill], runs: list[Any]) -> list[float]:
    """Fill each kill's ``takeover``: seconds until another process started one of the
    messages the victim held. Returns the measured ones."""
    starts: dict[str, list[tuple[float, int]]] = {}
    for run in runs:
        if run.event == "start":
            starts.setdefault(run.id, []).append((run.t, run.pid))
    measured = []
    for kill in kills:
        firsts = [
            t
            for msg_id in kill.held
            for t, pid in starts.get(msg_id, [])
            if t > kill.t and pid != kill.pid
        ]
        if firsts:
            kill.takeover = min(firsts) - kill.t
            measured.append(kill.takeover)
    return measured


def unexpected_errors(worker: FaultWorker) -> list[str]:
    """Log lines that mean a worker bug (a consumer loop that hit an unexpected error)."""
    return [
        line
        for line in worker.output().splitlines()
        if "unexpected error" in line or line.startswith("Exception in thread")
    ]


def report(name: str, **figures: Any) -> None:
    """Print one line of figures (``-s`` shows it); append it to ``$FAULTS_FIGURES`` too."""
    line = f"FAULTS {name} " + orjson.dumps(figures).decode()
    print(line)
    path = os.environ.get("FAULTS_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
