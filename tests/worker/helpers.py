"""Helpers to run real worker subprocesses and read what their handlers did."""

from __future__ import annotations

from collections import Counter

import redis

from redrelay import Relay
from redrelay.config import ConsumerOptions
from redrelay.protocol.envelope import decode_entry
from redrelay.worker.leases import Lease

from ..processes import ROOT as ROOT
from ..processes import Worker
from ..processes import wait_for as wait_for


class WorkerProcess(Worker):
    """``python -m redrelay worker tests.apps.worker_app:relay`` as a real subprocess."""

    def __init__(self, url: str, namespace: str, *args: str, **env: str) -> None:
        super().__init__(
            "tests.apps.worker_app:relay",
            url,
            *args,
            env={"TEST_NAMESPACE": namespace, **env},
        )

    def output(self) -> str:
        """Everything the worker printed (stops it first if it still runs)."""
        if self.proc.poll() is None:
            self.kill()
        return super().output()


def runs(url: str, namespace: str) -> list[tuple[str, int, str, int]]:
    """Every (id, pid, event, attempt) the test app's handlers recorded, in order."""
    with redis.Redis.from_url(url) as client:
        raw = client.lrange(f"{namespace}:test:runs", 0, -1)
    out = []
    for item in raw:
        msg_id, pid, event, attempt = item.decode().split()
        out.append((msg_id, int(pid), event, int(attempt)))
    return out


def done_counts(url: str, namespace: str) -> Counter[str]:
    return Counter(r[0] for r in runs(url, namespace) if r[2] == "done")


def joined_lease(relay: Relay, name: str = "q", **options: object) -> Lease:
    """A consumer's lease on queue ``name``, joined: drive fetch/ack step by step."""
    lease = Lease(
        relay.connection, relay.queue(name).keys, ConsumerOptions.build(**options)
    )  # type: ignore[arg-type]
    lease.join()
    return lease


def queued_body(entry: bytes) -> object:
    """The body of a queued entry (its envelope's ``b``)."""
    envelope = decode_entry(entry).envelope
    assert envelope is not None
    return envelope["b"]
