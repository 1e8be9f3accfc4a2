"""The worker process: signals, graceful stop, server warnings, and several processes.

First SIGTERM/SIGINT: stop fetching, give back unstarted deliveries at once, let running
handlers finish within the grace period, exit 0. A second signal exits at once with
status 1; whatever was running stays safe under the lease rule and is redelivered. A
worker that cannot keep its consumer threads alive (:mod:`.liveness`) stops the same
way and exits with status 3, for its supervisor or platform to restart it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from ..errors import BrokerUnavailable, RedrelayError
from .liveness import EXIT_UNHEALTHY
from .runner import Runner

if TYPE_CHECKING:
    from ..io.sync import Connection
    from ..relay import Relay

__all__ = ["Worker", "server_warnings", "supervise", "without_processes"]

log = logging.getLogger("redrelay.worker")


def server_warnings(conn: Connection) -> list[str]:
    """One line per Redis setting that can lose acknowledged messages."""
    warnings = []
    try:
        policy = conn.config_get("maxmemory-policy") or "unknown"
        aof_on = conn.config_get("appendonly") == "yes"
        save_on = bool((conn.config_get("save") or "").strip())
        cluster_node = conn.config_get("cluster-enabled") == "yes"
    except BrokerUnavailable as exc:
        return [f"cannot check the server's settings: {exc}"]
    except RedrelayError:
        return [
            "cannot read the server's configuration (CONFIG GET refused); check persistence and eviction by hand"
        ]
    if cluster_node and not conn.is_cluster:
        warnings.append(
            "this Redis is a Redis Cluster node but the URL is not a cluster URL: commands on keys "
            "held by other nodes fail (MOVED); use redis+cluster://host:port"
        )
    if policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis deletes keys, "
            "queued messages included; set maxmemory-policy noeviction"
        )
    if not aof_on and not save_on:
        warnings.append(
            "Redis has no persistence (appendonly no, no save points): a restart loses every queued "
            "message; set appendonly yes"
        )
    elif not aof_on:
        warnings.append(
            "Redis persists by snapshots only: a crash loses what came after the last one; set appendonly yes"
        )
    return warnings


class Worker:
    """Runs a relay's consumers and subscribers in this process until signalled.

    :param scheduler: also fire the relay's periodic jobs (``--no-scheduler``: not).
    :param parent_pid: stop gracefully when this process (a supervisor) is gone.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        queues: Iterable[str] | None = None,
        concurrency: int | None = None,
        subscribers: bool = True,
        scheduler: bool = True,
        grace: float = 30.0,
        parent_pid: int | None = None,
    ) -> None:
        self.relay = relay
        self.parent_pid = parent_pid
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.subscribers = subscribers
        self.scheduler = scheduler
        self.grace = grace
        self._signalled = threading.Event()
        self._signals = 0
        self._runner: Runner | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning(
                "second %s: exiting now; running messages return after their lease",
                signal.Signals(signum).name,
            )
            os._exit(1)
        log.warning(
            "%s: stopping (finishing running handlers for up to %.0fs; send it again to exit now)",
            signal.Signals(signum).name,
            self.grace,
        )
        self._signalled.set()
        if self._runner is not None:
            self._runner.request_stop()

    def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT, stop gracefully. Returns the exit status."""
        runner = Runner(
            self.relay,
            queues=self.queues,
            subscribers=self.subscribers,
            concurrency=self.concurrency,
            scheduler=self.scheduler,
        )
        self._runner = runner
        previous = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            try:
                runner.start()  # retries until Redis answers, logging each failure
            except BrokerUnavailable:
                if self._signalled.is_set():
                    log.warning("stopped before Redis answered")
                    return 0
                # Every start-up step retries until Redis answers: one that did not is a
                # defect, and a supervisor must restart us (not a clean exit).
                log.critical(
                    "could not start: Redis failed a start-up step", exc_info=True
                )
                return 1
            for line in server_warnings(self.relay.connection):
                log.warning("%s", line)
            names = ", ".join(c.name for c in runner.consumers) or "none"
            topics = (
                ", ".join(s.name for s in runner.topics.subs) if runner.topics else ""
            )
            log.info(
                "redrelay worker %d ready: queues [%s], %d subscribers%s",
                os.getpid(),
                names,
                len(self.relay.subscribers),
                f", topic groups [{topics}]" if topics else "",
            )
            while not self._signalled.wait(0.5):
                if runner.failed is not None:
                    break  # logged at CRITICAL; see liveness.py
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    # Children run in sessions of their own (see supervise()), so nothing
                    # else stops them when their supervisor is SIGKILLed.
                    log.warning("supervisor %d is gone; stopping", self.parent_pid)
                    break
            clean = runner.stop(self.grace)
            log.info(
                "redrelay worker %d stopped%s",
                os.getpid(),
                "" if clean else " (grace period exceeded)",
            )
            if runner.failed is not None:
                log.error(
                    "redrelay worker %d exits with status %d: %s",
                    os.getpid(),
                    EXIT_UNHEALTHY,
                    runner.failed,
                )
                return EXIT_UNHEALTHY
            return 0
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def supervise(
    argv: Sequence[str],
    processes: int,
    grace: float,
    *,
    command: Sequence[str] | None = None,
) -> int:
    """Run ``processes`` copies of ``python -m redrelay <argv>``; restart those that die.

    Signals are passed on to the children; the supervisor exits once they all exited.
    """
    stopping = threading.Event()
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL if signals > 1 else signum)

    def spawn() -> subprocess.Popen[bytes]:
        prefix = (
            [sys.executable, "-m", "redrelay"] if command is None else list(command)
        )
        # A session of its own: a Ctrl-C in the terminal reaches only the supervisor, which
        # passes it on once; otherwise each child would get it twice and exit at once.
        return subprocess.Popen([*prefix, *argv], start_new_session=True)

    children = [spawn() for _ in range(processes)]
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping.is_set():
            for i, child in enumerate(children):
                code = child.poll()
                if code is not None and not stopping.is_set():
                    log.warning(
                        "worker process %d exited with %s; starting a new one",
                        child.pid,
                        code,
                    )
                    time.sleep(0.2)
                    children[i] = spawn()
            stopping.wait(0.2)
        deadline = time.monotonic() + grace + 5
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def without_processes(argv: Sequence[str]) -> list[str]:
    """A worker command line minus ``-p/--processes`` (what a supervisor's children run)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("-p", "--processes"):
            skip = True
            continue
        # "-p2" too: a child that kept it would start a supervisor of its own.
        if arg.startswith("--processes=") or (arg[:2] == "-p" and arg[2:].isdigit()):
            continue
        out.append(arg)
    return out
