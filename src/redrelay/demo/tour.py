"""The demo's run: workers, producer, the kill, live progress, and the final check."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import RedrelayError
from ..io.sync import redact
from ..listener import Listener
from ..message import Message
from ..protocol.keys import QueueKeys
from ..relay import Relay
from . import (
    DRAIN_TIMEOUT,
    DUPLICATES_KEY,
    LEASE,
    NAMESPACE,
    PROCESSED_KEY,
    PRODUCE_SECONDS,
    PROGRESS_CHANNEL,
    PROGRESS_INTERVAL,
    QUEUE,
    WORKERS,
)

__all__ = ["Tour"]


@dataclass(slots=True)
class _Result:
    processed: int
    dead: int
    lost: list[str]
    unexpected_dead: int
    duplicates: int
    retried: int
    recovered: int


@dataclass(slots=True)
class _Kill:
    at: float
    #: The killed worker's consumer ids, until their lease is seen recovered.
    consumers: list[str]
    recovered_before: int


class Tour:
    """One run of the demo: the workers, the producer, the kill, the progress and the check."""

    def __init__(
        self,
        relay: Relay,
        messages: int,
        echo: Callable[[str], None],
        *,
        shown_url: str | None,
    ) -> None:
        self.relay = relay
        self.shown_url = shown_url
        self.queue = relay.queue(QUEUE)
        self.n = messages
        self.echo = echo
        self.started = time.monotonic()
        self.url = ""
        self.produced: list[str] = []
        self.poison: set[str] = set()
        self.flaky = self.delayed = 0
        self.workers: list[subprocess.Popen[bytes]] = []
        self.log: IO[bytes] | None = None
        self.stop_progress = threading.Event()
        self.killed: _Kill | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the run -------------------------------------------------------------------------

    def run(self) -> int:
        self._reset()
        listener = self._listen()
        publisher = threading.Thread(target=self._publish_progress, daemon=True)
        self.log = tempfile.NamedTemporaryFile(
            prefix="redrelay-demo-", suffix=".log", delete=False
        )
        interrupted = False
        try:
            self._start_workers()
            publisher.start()
            self._produce()
            drained = self._wait_drained()
            result = self._verify()
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            self.stop_progress.set()
            if publisher.ident is not None:
                publisher.join(2.0)
            codes = self._stop_workers()
            listener.stop(timeout=2.0)
            self.log.close()
            if interrupted:  # nothing to look into: the user stopped it
                os.unlink(self.log.name)
        clean = drained and not result.lost and all(c == 0 for c in codes)
        self._summary(result, drained, codes)
        if clean:
            os.unlink(self.log.name)
        else:
            self.echo(f"worker logs: {self.log.name}")
        return 0 if drained and not result.lost else 1

    def _reset(self) -> None:
        conn = self.relay.connection
        conn.call("PING")
        self.url = conn.url
        cursor: Any = 0
        while True:
            cursor, keys = conn.call(
                "SCAN", cursor, "MATCH", f"{NAMESPACE}:*", "COUNT", 1000
            )
            if keys:
                conn.call("UNLINK", *keys)
            if int(cursor) == 0:
                break
        self.echo(
            f"redrelay demo on {redact(self.url)}: {self.n} jobs on queue {QUEUE!r}, "
            f"{WORKERS} worker processes, lease {LEASE:g} s (namespace {NAMESPACE!r}, cleared)"
        )

    def _listen(self) -> Listener:
        self.relay.subscriber(PROGRESS_CHANNEL)(self._show_progress)
        listener = Listener(self.relay, self.relay.subscribers)
        listener.start()
        if not listener.connected.wait(10.0):
            self.echo("(the progress subscriber is not connected yet; carrying on)")
        return listener

    # -- workers -------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The directory holding the redrelay package, so the workers import this copy.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [package_root, env.get("PYTHONPATH")])
        )
        command = [sys.executable, "-m", "redrelay", "--url", self.url, "worker"]
        command += ["redrelay.demo:create_relay", "--grace", "10"]
        # A session of its own: a Ctrl-C in the terminal reaches only the demo, which
        # then stops its workers with one SIGTERM each.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def _start_workers(self) -> None:
        self.workers = [self._spawn() for _ in range(WORKERS)]
        self._wait_joined([w.pid for w in self.workers])
        pids = ", ".join(str(w.pid) for w in self.workers)
        self.echo(f"{self.elapsed():5.1f}s  started worker processes {pids}")

    def _wait_joined(self, pids: list[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not set(pids) <= set(self._consumers().values()):
            dead = [w for w in self.workers if w.pid in pids and w.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RedrelayError(
                    f"worker process {pids} did not start within {timeout:g} s; "
                    f"see its log: {self.log.name if self.log else '?'}"
                )
            time.sleep(0.05)

    def _consumers(self) -> dict[str, int]:
        """Consumer id -> pid, for every consumer holding a lease on the queue."""
        raw = self.relay.connection.call("HGETALL", self.queue.keys.consumers)
        return {
            cid.decode(): int(orjson.loads(info).get("pid", 0))
            for cid, info in raw.items()
        }

    def _kill_one(self) -> None:
        victim = self.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        cids = [cid for cid, pid in self._consumers().items() if pid == victim.pid]
        keys: QueueKeys = self.queue.keys
        held = sum(
            int(self.relay.connection.call("HLEN", keys.inflight(c))) for c in cids
        )
        self.killed = _Kill(time.monotonic(), cids, self._counter("recovered"))
        self.echo(
            f"{self.elapsed():5.1f}s  >> SIGKILL worker {victim.pid}: it held {held} messages "
            "in flight (fetched, not acked)"
        )
        self.workers[0] = self._spawn()
        self.echo(
            f"{self.elapsed():5.1f}s  >> started worker {self.workers[0].pid} to replace it"
        )

    def _check_recovery(self) -> None:
        kill = self.killed
        if kill is None or not kill.consumers:
            return
        leases = self.queue.keys.leases
        call = self.relay.connection.call
        if any(call("ZSCORE", leases, c) is not None for c in kill.consumers):
            return
        recovered = self._counter("recovered") - kill.recovered_before
        self.echo(
            f"{self.elapsed():5.1f}s  >> the killed worker's lease expired: {recovered} "
            f"messages went back to the queue {time.monotonic() - kill.at:.1f} s after "
            "the kill (redelivered with attempt + 1)"
        )
        kill.consumers = []

    def _stop_workers(self) -> list[int]:
        alive = [w for w in self.workers if w.poll() is None]
        for w in alive:
            w.send_signal(signal.SIGTERM)
        codes = []
        for w in self.workers:
            try:
                codes.append(w.wait(15.0))
            except subprocess.TimeoutExpired:
                w.kill()
                codes.append(w.wait())
        return codes

    # -- producing -----------------------------------------------------------------------

    def _produce(self) -> None:
        rng = random.Random(42)
        batches = 40
        size = -(-self.n // batches)
        kill_after = max(1, self.n * 35 // 100)
        for start in range(0, self.n, size):
            self._put_batch(range(start, min(self.n, start + size)), rng)
            if self.killed is None and self._processed() >= kill_after:
                self._kill_one()
            self._check_recovery()
            time.sleep(PRODUCE_SECONDS / batches)
        deadline = time.monotonic() + 15.0
        while self.killed is None and self._processed() < kill_after:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if self.killed is None:
            self._kill_one()
        self.echo(
            f"{self.elapsed():5.1f}s  produced {self.n} jobs: {len(self.poison)} always fail, "
            f"{self.flaky} fail once, {self.delayed} delayed by 1-3 s"
        )

    def _put_batch(self, numbers: range, rng: random.Random) -> None:
        now: list[dict[str, Any]] = []
        kinds: list[str] = []
        for n in numbers:
            kind = "poison" if n % 100 == 50 else "flaky" if n % 20 == 7 else "ok"
            body = {"n": n, "kind": kind, "ms": rng.randint(2, 8)}
            if n % 12 == 3:
                self._note(self.queue.put(body, delay=rng.uniform(1.0, 3.0)), kind)
                self.delayed += 1
            else:
                now.append(body)
                kinds.append(kind)
        for msg_id, kind in zip(self.queue.put_many(now), kinds, strict=True):
            self._note(msg_id, kind)

    def _note(self, msg_id: str, kind: str) -> None:
        self.produced.append(msg_id)
        if kind == "poison":
            self.poison.add(msg_id)
        elif kind == "flaky":
            self.flaky += 1

    # -- watching ------------------------------------------------------------------------

    def _processed(self) -> int:
        return int(self.relay.connection.call("SCARD", PROCESSED_KEY))

    def _counter(self, name: str) -> int:
        value = self.relay.connection.call("HGET", self.queue.keys.stats, name)
        return int(value or 0)

    def _publish_progress(self) -> None:
        while not self.stop_progress.wait(PROGRESS_INTERVAL):
            try:
                s = self.queue.stats()
                self.relay.publish(
                    PROGRESS_CHANNEL,
                    {
                        "t": round(self.elapsed(), 1),
                        "produced": len(self.produced),
                        "processed": self._processed(),
                        "ready": s.ready,
                        "delayed": s.delayed,
                        "in_flight": s.in_flight,
                        "dead": s.dead,
                        "retried": s.counters.get("retried", 0),
                        "consumers": s.consumers,
                    },
                )
            except RedrelayError:
                continue  # a progress line is not worth failing the demo for

    def _show_progress(self, message: Message) -> None:
        p = message.body
        self.echo(
            f"{p['t']:5.1f}s  produced {p['produced']:>5}/{self.n}  processed {p['processed']:>5}"
            f"  ready {p['ready']:>4}  delayed {p['delayed']:>3}  in flight {p['in_flight']:>3}"
            f"  retried {p['retried']:>3}  dead {p['dead']:>3}  consumers {p['consumers']}"
        )

    def _wait_drained(self) -> bool:
        """Wait until nothing is ready, delayed or in flight and every job is accounted for."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        empty_polls = 0
        while time.monotonic() < deadline:
            self._check_recovery()
            s = self.queue.stats()
            empty = s.ready + s.delayed + s.in_flight == 0
            empty_polls = empty_polls + 1 if empty else 0
            accounted = self._processed() + s.dead >= len(self.produced)
            # Stats are read in two round trips, so one empty reading is not proof.
            recovered = self.killed is not None and not self.killed.consumers
            if (empty and accounted and recovered) or empty_polls >= 5:
                return True
            time.sleep(0.1)
        return False

    # -- checking ------------------------------------------------------------------------

    def _verify(self) -> _Result:
        conn = self.relay.connection
        processed = {m.decode() for m in conn.call("SMEMBERS", PROCESSED_KEY)}
        dead = {m.decode() for m in conn.call("ZRANGE", self.queue.keys.dead, 0, -1)}
        lost = [i for i in self.produced if i not in processed and i not in dead]
        return _Result(
            processed=len(processed),
            dead=len(dead),
            lost=lost,
            unexpected_dead=len(dead - self.poison),
            duplicates=int(conn.call("GET", DUPLICATES_KEY) or 0),
            retried=self._counter("retried"),
            recovered=self._counter("recovered"),
        )

    def _summary(self, r: _Result, drained: bool, codes: list[int]) -> None:
        codes_text = ", ".join(str(c) for c in codes)
        self.echo(
            f"{self.elapsed():5.1f}s  stopped the workers with SIGTERM (exit status {codes_text})"
        )
        dead_note = (
            "the always-failing jobs"
            if r.unexpected_dead == 0
            else f"{r.unexpected_dead} of them were not meant to fail"
        )
        rows = [
            (
                "produced",
                len(self.produced),
                f"{len(self.poison)} always fail, {self.flaky} fail once, {self.delayed} delayed",
            ),
            ("processed", r.processed, "recorded by the handlers in a Redis set"),
            ("retried", r.retried, "failed attempts retried with backoff"),
            ("dead-lettered", r.dead, dead_note),
            (
                "recovered after kill",
                r.recovered,
                "taken back from the killed worker's lease",
            ),
            (
                "duplicates",
                r.duplicates,
                "at-least-once: ran again after the kill cut the ack",
            ),
            ("lost", len(r.lost), "neither processed nor dead-lettered"),
        ]
        self.echo("")
        self.echo("summary")
        for name, value, note in rows:
            self.echo(f"  {name:<22}{value:>7}   {note}")
        self.echo(f"  {'elapsed':<22}{self.elapsed():>6.1f}s")
        self.echo("")
        if not drained:
            self.echo(f"FAIL: the queue did not empty within {DRAIN_TIMEOUT:g} s")
        if r.lost:
            self.echo(f"FAIL: {len(r.lost)} jobs lost, e.g. {', '.join(r.lost[:5])}")
        if drained and not r.lost:
            self.echo("OK: every job was processed or dead-lettered; none was lost.")
        example = self.queue.dead_letters(limit=1)
        if example:
            self.echo(f"A dead letter: {example[0].id}: {example[0].reason}")
        url = self.shown_url
        url = (
            ""
            if url in (None, os.environ.get("REDRELAY_URL"))
            else f" --url {redact(url)}"
        )
        command = f"redrelay{url} --namespace {NAMESPACE}"
        self.echo(f"Look around:  {command} stats")
        self.echo(f"              {command} dead list {QUEUE} --traceback")
